"""DeepLab v3+ on the embedded `shapes` dataset: trains and evaluates on a laptop CPU in minutes."""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()
  config.dataset = 'shapes'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.crop_size = (65, 65)  # 4 * 16 + 1; the images are 64 x 64.
  config.eval_crop_size = (65, 65)
  config.min_scale, config.max_scale = 0.75, 1.5

  model = config.model
  model.backbone = 'resnet18'
  model.width = 0.25  # 16 to 128 channels.
  model.num_classes = 4
  model.output_stride = 16
  model.atrous_rates = (1, 2, 3)  # The stride-16 feature map is only 5 x 5.
  model.multi_grid = (1, 2)
  model.aspp_features = 64
  model.low_level_features = 32
  model.decoder_features = 64
  model.bn_momentum = 0.9  # Short training: running statistics must catch up quickly.
  # Pixels scaled to [-1, 1], as this recipe has always trained (so its checkpoints still
  # predict the same), not the ImageNet statistics of the ResNet-18 entry: no pretrained weights.
  model.mean_rgb = model.std_rgb = (127.5, 127.5, 127.5)

  config.batch_size = 16
  config.num_train_steps = 1_500
  config.learning_rate = 0.1
  config.warmup_steps = 100
  config.eval_batch_size = 32
  config.eval_every_steps = 500
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  return config
