"""DeepLab v1 (DeepLab-LargeFOV) on PASCAL VOC 2012: VGG-16, output stride 8, fc6 at rate 12.

Aims at Table 2 of Chen et al. 2015 ("Semantic Image Segmentation with Deep Convolutional Nets
and Fully Connected CRFs", ICLR): DeepLab-LargeFOV, 62.25% mIoU on VOC 2012 val, 67.64% with the
CRF. The architecture: VGG-16 with pool4 and pool5 at stride 1, conv5 at atrous rate 2, fc6 a 3x3
atrous conv (rate 12, 1024 channels), fc7 1x1 (1024), dropout 0.5. The paper's training: batch
20, lr 0.001 (0.01 for the final classifier), multiplied by 0.1 every 2000 steps, 6k steps,
momentum 0.9, weight decay 5e-4. Add `--config.eval.crf=True` for the paper's DenseCRF. Start
from torchvision's ImageNet VGG-16 (see the README) with --config.init_from=DIR.
"""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()  # VOC 2012: train_aug -> validation, eval crop 513, flip.
  config.crop_size = (321, 321)  # 40 * 8 + 1.
  config.min_scale, config.max_scale = 0.5, 1.5

  model = config.model
  model.architecture = 'deeplabv1'
  model.backbone = 'vgg16'
  model.num_classes = 21
  model.output_stride = 8
  model.atrous_rates = (12,)  # fc6.
  model.large_fov_features = 1024
  model.dropout_rate = 0.5

  config.batch_size = 20
  config.num_train_steps = 6_000
  config.learning_rate = 0.001
  config.learning_rate_multipliers = (('classifier', 10.0),)
  config.lr_schedule = 'step'
  config.lr_step_size, config.lr_step_factor = 2_000, 0.1
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.init_from = None  # A converted ImageNet VGG-16, e.g. /tmp/vgg16_imagenet.
  return config
