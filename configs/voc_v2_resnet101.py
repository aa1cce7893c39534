"""DeepLab v2 on PASCAL VOC 2012: ResNet-101 with ASPP-L, output stride 8.

Aims at Table 4 of Chen et al. 2017 ("DeepLab: Semantic Image Segmentation with Deep
Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI): ResNet-101 on VOC 2012
val, 68.72% mIoU single-scale from ImageNet alone, up to 76.35% with multi-scale inputs, COCO
pretraining and ASPP, 77.69% with the CRF. The architecture: res4 at atrous rate 2, res5 at rate
4, and ASPP-L: four 3x3 atrous convolutions to class logits (rates 6, 12, 18, 24), summed. The
training of its released model: batch 10, crop 321, random scale 0.5-1.5, lr 2.5e-4 poly 0.9
(10x on the classifier), 20k steps, momentum 0.9, weight decay 5e-4, and BatchNorm frozen:
statistics, scales and offsets as ImageNet left them. Frozen BatchNorm needs pretrained
statistics: start from torchvision's ImageNet ResNet-101 with --config.init_from=DIR. Add
`--config.eval.crf=True` for its DenseCRF.
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
  model.freeze_batch_norm = True

  config.batch_size = 10
  config.num_train_steps = 20_000
  config.learning_rate = 2.5e-4
  config.learning_rate_multipliers = (('/bn/', 0.0), ('classifier', 10.0))
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.init_from = None  # A converted ImageNet ResNet-101, e.g. /tmp/resnet101_imagenet.
  return config
