"""DeepLab v2 on PASCAL VOC 2012: ResNet-101 with ASPP-L, output stride 8.

The architecture of Chen et al. 2017 (TPAMI): ResNet-101 with res4 at atrous rate 2 and res5 at
rate 4, and ASPP-L: four 3x3 atrous convolutions to class logits (rates 6, 12, 18, 24), summed.
Training follows the paper: batch 10, crop 321, random scale 0.5-1.5, lr 2.5e-4 poly 0.9, 20k
steps, momentum 0.9, weight decay 5e-4. Unlike the paper, BatchNorm is trained (cross-replica)
rather than frozen. Add `--config.eval.crf=True` for its DenseCRF.
"""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()  # VOC 2012: train_aug -> validation, eval crop 513, flip.
  config.crop_size = (321, 321)  # 40 * 8 + 1.
  config.min_scale, config.max_scale = 0.5, 1.5

  model = config.model
  model.architecture = 'deeplabv2'
  model.backbone = 'resnet101'
  model.num_classes = 21
  model.output_stride = 8
  model.atrous_rates = (6, 12, 18, 24)  # ASPP-L.
  model.multi_grid = (1, 1, 1)

  config.batch_size = 10
  config.num_train_steps = 20_000
  config.learning_rate = 2.5e-4
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.init_from = None  # A converted ImageNet ResNet-101, e.g. /tmp/resnet101_imagenet.
  return config
