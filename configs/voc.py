"""DeepLab v3+ on PASCAL VOC 2012: the official recipe (ResNet-101, output stride 16).

Trains on train_aug (VOC train + SBD, 10,582 images) and evaluates on VOC val (1,449 images).
Start from ImageNet weights, as the recipe does: convert torchvision's ResNet-101 (see the
README) and pass --config.init_from=DIR; the backbone is restored, the heads start fresh.
"""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()
  config.dataset = 'voc2012'
  config.train_split = 'train_aug'
  config.eval_split = 'validation'
  config.crop_size = (513, 513)
  config.eval_crop_size = (513, 513)  # VOC images are at most 500 x 500.
  config.min_scale, config.max_scale = 0.5, 2.0
  config.flip = True

  model = config.model
  model.architecture = 'deeplabv3plus'
  model.backbone = 'resnet101'
  model.num_classes = 21
  model.output_stride = 16
  model.atrous_rates = (6, 12, 18)
  model.multi_grid = (1, 2, 4)
  model.bn_momentum = 0.9997

  config.batch_size = 16
  config.num_train_steps = 30_000
  config.learning_rate = 0.007
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.init_from = None  # A converted ImageNet ResNet-101, e.g. /tmp/resnet101_imagenet.
  return config
