"""Shared fixtures. Tests run on 4 fake CPU devices, so multi-device code paths are exercised."""

import importlib.util
import pathlib

# torchvision first: importing it after TensorFlow crashes (a segfault in triton's import).
import torchvision  # pylint: disable=unused-import
import jax

jax.config.update('jax_num_cpu_devices', 4)

import pytest  # pylint: disable=g-import-not-at-top

from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str):
  """get_config() of configs/<name>.py, loaded by path as config_flags does."""
  spec = importlib.util.spec_from_file_location(name, REPO / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def tiny_shapes_config(data_dir: str):
  """configs/shapes.py shrunk to a model and data that train in seconds."""
  config = load_config('shapes')
  config.data_dir = data_dir
  config.crop_size = (33, 33)
  config.min_scale, config.max_scale = 0.5, 0.5  # 64x64 images become 32x32, padded to 33.
  config.eval_split = 'validation[:20]'  # Not a multiple of the eval batch.
  config.batch_size = config.eval_batch_size = 8
  config.model.width = 0.125
  config.model.aspp_features = config.model.decoder_features = 16
  config.model.low_level_features = 8
  config.num_train_steps, config.warmup_steps = 4, 0
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
  return config


@pytest.fixture(scope='session')
def shapes_dir(tmp_path_factory) -> str:
  """A TFDS data directory holding the built `shapes` dataset."""
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  datasets.prepare_builder(datasets.get('shapes'), data_dir)
  return data_dir


@pytest.fixture(scope='session')
def tiny_checkpoint(shapes_dir, tmp_path_factory):
  """(config, workdir) of the tiny shapes model trained for one step, checkpoint included."""
  from deeplab_jax import train  # pylint: disable=g-import-not-at-top
  config = tiny_shapes_config(shapes_dir)
  config.num_train_steps = 1
  workdir = str(tmp_path_factory.mktemp('tiny_checkpoint'))
  train.train_and_evaluate(config, workdir)
  return config, workdir
