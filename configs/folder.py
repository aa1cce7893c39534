"""DeepLab v3+ on your own images and label PNGs (see deeplab_jax/data/datasets/folder.py).

  python -m deeplab_jax.main --config=configs/folder.py --workdir=/tmp/my_run \
      --config.folder.root=/path/to/data --config.folder.num_classes=11 \
      --config.model.num_classes=11 --config.folder.ignore_value=11

The folder holds train/{images,labels} and val/{images,labels} (or images/, labels/ and
splits/{train,val}.txt). Name the classes (--config.folder.class_names="('sky', ...)") or
give their number (--config.folder.num_classes); the model's must be the same.
Sized for a CPU or a single accelerator; scale it up like configs/voc.py for real work.
"""

from deeplab_jax import defaults


def get_config():
  config = defaults.get_config()
  config.dataset = 'folder'
  config.train_split = 'train'
  config.eval_split = 'val'
  config.folder.root = None  # Required: --config.folder.root=/path/to/data.
  # Required too: the classes, named (config.folder.class_names) or counted (.num_classes).
  config.crop_size = (257, 257)
  config.eval_crop_size = (513, 513)  # Every validation image must fit: pad size.
  config.min_scale, config.max_scale = 0.5, 2.0

  model = config.model
  model.backbone = 'resnet50'
  model.num_classes = 2  # Your number of classes, as the folder has.
  model.output_stride = 16
  model.atrous_rates = (6, 12, 18)
  model.multi_grid = (1, 2, 4)
  model.bn_momentum = 0.99

  config.batch_size = 8
  config.num_train_steps = 10_000
  config.learning_rate = 0.01
  config.warmup_steps = 200
  config.eval_batch_size = 8
  config.eval_every_steps = 1_000
  config.checkpoint_every_steps = 1_000
  return config
