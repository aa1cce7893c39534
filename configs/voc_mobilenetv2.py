"""DeepLab v3 on PASCAL VOC 2012 with MobileNetV2 (width 1.0) and the model zoo's mobile head.

The mobile head is ASPP without atrous branches: a 1x1 branch and image pooling. Output stride
16 (use --config.model.output_stride=8 for the denser, slower variant), crop 513, batch 16,
lr 0.007 poly, 30k steps, weight decay 4e-5. Start from torchvision's ImageNet MobileNetV2 (see
the README) with --config.init_from=DIR; the model normalises pixels as its weights expect.
"""

from deeplab_jax import defaults


def get_config():
  # The defaults are VOC 2012's data: train_aug -> validation, crop 513, scale 0.5-2.0, flip.
  config = defaults.get_config()

  model = config.model
  model.architecture = 'deeplabv3'
  model.backbone = 'mobilenetv2'
  model.num_classes = 21
  model.output_stride = 16
  model.atrous_rates = ()  # The mobile head: 1x1 branch and image pooling only.
  model.width = 1.0

  config.batch_size = 16
  config.num_train_steps = 30_000
  config.learning_rate = 0.007
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 4e-5
  config.init_from = None  # A converted ImageNet MobileNetV2, e.g. /tmp/mobilenet_v2_imagenet.
  return config
