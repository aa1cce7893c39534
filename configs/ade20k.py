"""DeepLab v3+ on ADE20K (SceneParsing, 150 classes): ResNet-101, output stride 16, 513 crops.

Trains on the 20,210 training images and evaluates on the 2,000 validation images; pixels of
"other objects" (stored label 0) are ignored. The archive is downloaded when missing (see
deeplab_jax/data/datasets/ade20k.py). Start from ImageNet weights: convert torchvision's
ResNet-101 (see the README) and pass --config.init_from=DIR.

Evaluation is mmsegmentation's protocol: each image resized, aspect ratio kept, to fit a long
side of 2048 and a short side of 512 (a 2000 x 1500 photo runs at 683 x 512), the probabilities
resized back and scored against the labels at the original resolution. No image is padded to
2049 x 2049.
"""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()
  config.dataset = 'ade20k'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.crop_size = (513, 513)
  # Evaluation follows mmsegmentation's ADE20K protocol: each image resized, aspect ratio kept,
  # to fit a long side of 2048 and a short side of 512, and the probabilities resized back and
  # scored at the original resolution. The model's frame is sized to the split (None): the
  # least k * 16 + 1 holding every resized image. TF DeepLab's protocol instead resizes the
  # long side to 513: --config.eval.resize=long_side --config.eval.resize_size='(513,)'
  # --config.eval_crop_size='(513, 513)'.
  config.eval.resize, config.eval.resize_size = 'fit_within', (2048, 512)
  config.eval_crop_size = None
  config.eval_batch_size = 8  # Probabilities at full size (150 classes): half the default.
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
