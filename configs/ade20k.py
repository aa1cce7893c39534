"""DeepLab v3+ on ADE20K (SceneParsing, 150 classes): ResNet-101, output stride 16, 513 crops.

Trains on the 20,210 training images and evaluates on the 2,000 validation images; pixels of
"other objects" (stored label 0) are ignored. The archive is downloaded when missing (see
deeplab_jax/data/datasets/ade20k.py). Start from ImageNet weights: convert torchvision's
ResNet-101 (see the README) and pass --config.init_from=DIR.
"""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()
  config.dataset = 'ade20k'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.crop_size = (513, 513)
  # The official TF recipe first resizes every image to a long side of 513; this library does
  # not, so evaluation pads whole images to this size, which must hold the largest validation
  # image. 2049 leaves room for long panoramas; an image that does not fit stops evaluation,
  # naming it and its size. Lower it (k * 16 + 1) to your largest image to save compute.
  config.eval_crop_size = (2049, 2049)
  config.eval_batch_size = 8  # Large whole images: half the default.
  config.min_scale, config.max_scale = 0.5, 2.0
  config.flip = True

  model = config.model
  model.architecture = 'deeplabv3plus'
  model.backbone = 'resnet101'
  model.num_classes = 150
  model.output_stride = 16
  model.atrous_rates = (6, 12, 18)
  model.multi_grid = (1, 2, 4)
  model.bn_momentum = 0.9997

  config.batch_size = 16  # The TF recipe asks for > 12 to train batch norm.
  config.num_train_steps = 150_000
  config.learning_rate = 0.01  # Not given by the TF recipe (its g3doc); the usual value.
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.init_from = None  # A converted ImageNet ResNet-101, e.g. /tmp/resnet101_imagenet.
  return config
