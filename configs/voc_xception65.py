"""DeepLab v3+ on PASCAL VOC 2012 with Xception-65: the model zoo's best backbone.

The official recipe: modified aligned Xception-65 at output stride 16, ASPP rates (6, 12, 18),
separable convolutions in ASPP and the decoder, crop 513, batch 16, lr 0.007 poly, 30k steps,
weight decay 4e-5, inputs scaled to [-1, 1]. Evaluate at output stride 8 with rates (12, 24, 36)
and eval.scales/flip for the zoo's best numbers. There are no torchvision Xception weights to
convert, so this trains from scratch unless --config.init_from names your own checkpoint.
"""

from deeplab_jax import defaults


def get_config():
  # The defaults are VOC 2012's data: train_aug -> validation, crop 513, scale 0.5-2.0, flip.
  config = defaults.get_config()

  model = config.model
  model.architecture = 'deeplabv3plus'
  model.backbone = 'xception65'
  model.num_classes = 21
  model.output_stride = 16
  model.atrous_rates = (6, 12, 18)
  model.separable_conv = True
  model.bn_momentum = 0.9997
  model.bn_epsilon = 1e-3

  config.batch_size = 16
  config.num_train_steps = 30_000
  config.learning_rate = 0.007
  config.lr_power = 0.9
  config.momentum = 0.9
  config.weight_decay = 4e-5
  return config
