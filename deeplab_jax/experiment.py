"""What training and evaluation start from: the config checked against its dataset, the dataset
prepared, and the device mesh."""

from absl import logging
from etils import epath
import jax
import ml_collections
import tensorflow_datasets as tfds

from deeplab_jax import sharding
from deeplab_jax.data import datasets


def check_config(config: ml_collections.ConfigDict, info: datasets.DatasetInfo) -> None:
  """Fails early, naming the key, on settings that cannot work together."""
  if config.model.num_classes != info.num_classes:
    raise ValueError(f'config.model.num_classes={config.model.num_classes}, but dataset '
                     f'{info.name!r} has {info.num_classes} classes')
  for key in ('batch_size', 'eval_batch_size'):
    if config[key] % jax.device_count():
      raise ValueError(f'config.{key}={config[key]} is not divisible by the number of devices '
                       f'({jax.device_count()})')
  if config.init_from and not epath.Path(config.init_from).is_dir():
    raise ValueError(f'config.init_from={config.init_from!r} is not a directory')
  for key in ('crop_size', 'eval_crop_size'):
    if len(config[key]) != 2 or min(config[key]) < 1:
      raise ValueError(f'config.{key}={config[key]} must be (height, width)')


def prepare(config: ml_collections.ConfigDict) -> tuple[datasets.DatasetInfo,
                                                        tfds.core.DatasetBuilder,
                                                        jax.sharding.Mesh]:
  """(dataset info, its prepared TFDS builder, the device mesh), after checking the config."""
  info = datasets.get(config.dataset, config.folder)
  check_config(config, info)
  mesh = sharding.create_mesh()
  logging.info('Mesh: %s over %d devices (%d processes)', dict(mesh.shape), jax.device_count(),
               jax.process_count())
  return info, datasets.prepare_builder(info, config.data_dir, config.manual_dir), mesh
