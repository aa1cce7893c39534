"""What training and evaluation start from: the config checked against its dataset, the dataset
prepared (by one process), and the device mesh."""

from collections.abc import Callable, Collection
import io
from typing import TypeVar

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import ml_collections
from PIL import Image
import tensorflow_datasets as tfds

from deeplab_jax import losses
from deeplab_jax import models
from deeplab_jax import schedules
from deeplab_jax import sharding
from deeplab_jax.config_error import ConfigError, check_splits
from deeplab_jax.data import datasets

T = TypeVar('T')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError, naming the key, for settings that cannot work (together), before
  anything is built."""
  models.check_model_config(config.model)
  devices = jax.device_count()
  for key in ('batch_size', 'eval_batch_size'):
    check_splits(key, config[key], devices, 'devices')
  schedules.create_learning_rate_schedule(config)
  losses.check_loss_config(config)
  if config.init_from and not epath.Path(config.init_from).is_dir():
    raise ConfigError('init_from', config.init_from, 'is not a directory')
  stride = config.model.output_stride
  for key in ('crop_size', 'eval_crop_size'):
    if len(config[key]) != 2 or min(config[key]) < stride + 1:
      raise ConfigError(key, config[key], f'takes (height, width), each at least output_stride '
                        f'+ 1 = {stride + 1} (k * output_stride + 1 is best)',
                        (4 * stride + 1,) * 2)


def check_num_classes(config: ml_collections.ConfigDict, info: datasets.DatasetInfo) -> None:
  """Raises a ConfigError if the model's class count is not the dataset's."""
  if config.model.num_classes != info.num_classes:
    raise ConfigError('model.num_classes', config.model.num_classes,
                      f'dataset {info.name!r} has {info.num_classes} classes', info.num_classes)


def largest_image(info: datasets.DatasetInfo, builder: tfds.core.DatasetBuilder,
                  split: str) -> tuple[int, int, str]:
  """(height, width, name) of the tallest and of the widest image of `split`: from the features'
  fixed shape, else from each file's header (nothing is decoded)."""
  height, width = builder.info.features[info.image_key].shape[:2]
  if height is not None and width is not None:
    return height, width, f'every {info.name} image'
  height, width, name = 0, 0, 'no image'
  examples = builder.as_dataset(split, decoders={info.image_key: tfds.decode.SkipDecoding()})
  for example in tfds.as_numpy(examples):
    with Image.open(io.BytesIO(example[info.image_key])) as image:
      image_width, image_height = image.size
    if image_height > height or image_width > width:
      name = example.get(info.name_key, b'an image').decode()
      height, width = max(height, image_height), max(width, image_width)
  return height, width, name


def check_eval_crop(config: ml_collections.ConfigDict, info: datasets.DatasetInfo,
                    builder: tfds.core.DatasetBuilder) -> None:
  """Raises a ConfigError unless config.eval_crop_size holds every image of config.eval_split."""
  height, width, name = largest_image(info, builder, config.eval_split)
  crop_height, crop_width = config.eval_crop_size
  if height > crop_height or width > crop_width:
    stride = config.model.output_stride
    fits = tuple(-(-max(size, crop) // stride) * stride + 1 if size > crop else crop
                 for size, crop in ((height, crop_height), (width, crop_width)))
    raise ConfigError('eval_crop_size', tuple(config.eval_crop_size),
                      f'{config.eval_split} of {info.name!r} holds images up to {height}x'
                      f'{width} ({name}), and evaluation pads each to the crop', fits)


def check_workdir(workdir: str) -> None:
  """Warns when the processes of a multi-process job would each write a local workdir of
  their own (on a TPU pod slice, use gs://)."""
  if jax.process_count() > 1 and '://' not in workdir:
    logging.warning('%s\nThe workdir %s is a local path, but this job runs %d processes: each '
                    'host writes its own copy of the checkpoints, so a restart on other hosts '
                    'would not find them. Use a gs:// workdir on a TPU pod slice.\n%s',
                    '!' * 80, workdir, jax.process_count(), '!' * 80)


def prepare_dataset(config: ml_collections.ConfigDict, splits: Collection[str] | None = None
                    ) -> tuple[datasets.DatasetInfo, tfds.core.DatasetBuilder]:
  """(the dataset's info, its TFDS builder of `splits`, by default the train and eval splits),
  built in `config.data_dir` if it is not yet."""
  info = datasets.get(config.dataset, config.folder)
  splits = (config.train_split, config.eval_split) if splits is None else splits
  return info, datasets.prepare_builder(info, config.data_dir, config.manual_dir, splits)


def prepare(config: ml_collections.ConfigDict, splits: Collection[str] | None = None
            ) -> tuple[datasets.DatasetInfo, tfds.core.DatasetBuilder, jax.sharding.Mesh]:
  """(dataset info, its prepared TFDS builder of `splits` (default: train and eval), the device
  mesh), after checking the config.

  With several processes, process 0 builds a missing dataset while the others wait, so that
  they never write the same data_dir at once.
  """
  check_config(config)
  info = datasets.get(config.dataset, config.folder)
  check_num_classes(config, info)
  mesh = sharding.create_mesh()
  logging.info('Mesh: %s over %d devices (%d processes)', dict(mesh.shape), jax.device_count(),
               jax.process_count())
  _, builder = first_process_first(lambda: prepare_dataset(config, splits),
                                   'dataset prepared')
  check_eval_crop(config, info, builder)
  return info, builder, mesh


def first_process_first(make: Callable[[], T], name: str) -> T:
  """make() in process 0, then in the others: what it writes once (a dataset, a cache), the
  others read instead of writing the same files at once."""
  if jax.process_index() == 0:
    made = make()
  multihost_utils.sync_global_devices(name)
  if jax.process_index() > 0:
    made = make()
  return made
