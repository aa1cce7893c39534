"""DeepLab v3+ on Cityscapes: the official recipe (ResNet-101, output stride 16, 769 crops).

Trains on the 2,975 finely annotated train images and evaluates on the 500 val images, whole
(1024 x 2048, padded to 1025 x 2049), over the 19 train-id classes. Cityscapes needs a manual
download (see deeplab_jax/data/datasets/cityscapes.py). Start from ImageNet weights: convert
torchvision's ResNet-101 (see the README) and pass --config.init_from=DIR.
"""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()
  config.dataset = 'cityscapes'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.crop_size = (769, 769)
  config.eval_crop_size = (1025, 2049)  # Whole 1024 x 2048 images, padded to k * 16 + 1.
  config.eval_batch_size = 8  # Large whole images: half the default.
  config.min_scale, config.max_scale = 0.5, 2.0
  config.flip = True

  model = config.model
  model.architecture = 'deeplabv3plus'
  model.backbone = 'resnet101'
  model.num_classes = 19
  model.output_stride = 16
  model.atrous_rates = (6, 12, 18)
  model.multi_grid = (1, 2, 4)
  model.bn_momentum = 0.9997

  # The g3doc asks for a batch above 8 to train batch norm well: raise it if memory allows.
  config.batch_size = 8
  config.num_train_steps = 90_000
  config.learning_rate = 0.01  # Not given by the TF recipe (its g3doc); the usual value.
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.init_from = None  # A converted ImageNet ResNet-101, e.g. /tmp/resnet101_imagenet.
  return config
