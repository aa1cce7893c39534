"""Shared fixtures. Tests run on 4 fake CPU devices, so multi-device code paths are exercised."""

import atexit
import importlib.util
import os
import pathlib
import shutil
import tempfile

# XLA:CPU without LLVM's optimisations, here and in the programs the tests start: the tests'
# tiny models compile about a quarter faster and run for too little time to miss them.
os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), '--xla_backend_optimization_level=0']).strip()

# torchvision first: importing it after TensorFlow crashes (a segfault in triton's import).
import torchvision  # pylint: disable=unused-import
import jax

jax.config.update('jax_num_cpu_devices', 4)
# Random keys from the 'rbg' generator, here and in the programs the tests start: XLA:CPU
# compiles a model's initialisation about 4x faster than with threefry (the training code's own
# initialisation uses rbg already; no test depends on the generator's values).
os.environ.setdefault('JAX_DEFAULT_PRNG_IMPL', 'rbg')
jax.config.update('jax_default_prng_impl', os.environ['JAX_DEFAULT_PRNG_IMPL'])

# One persistent XLA cache for the run, shared through the environment with pytest-xdist's
# workers and the programs the tests start: many tests compile the same tiny models.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='deeplab_jax_tests_xla_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])

import pytest  # pylint: disable=g-import-not-at-top

from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str):
  """get_config() of configs/<name>.py, loaded by path as config_flags does."""
  spec = importlib.util.spec_from_file_location(name, REPO / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# configs/shapes.py shrunk to a model and data that train in seconds.
TINY_SHAPES = {
    'crop_size': (33, 33),
    'min_scale': 0.5, 'max_scale': 0.5,  # 64x64 images become 32x32, padded to 33.
    'eval_split': 'validation[:20]',  # Not a multiple of the eval batch.
    'batch_size': 8, 'eval_batch_size': 8,
    'model.width': 0.125,
    'model.aspp_features': 16, 'model.decoder_features': 16, 'model.low_level_features': 8,
    'num_train_steps': 4, 'warmup_steps': 0,
    'log_every_steps': 2, 'eval_every_steps': 2, 'checkpoint_every_steps': 2,
}


def tiny_shapes_config(data_dir: str):
  """configs/shapes.py with TINY_SHAPES."""
  config = load_config('shapes')
  config.data_dir = data_dir
  for key, value in TINY_SHAPES.items():
    section, _, name = key.rpartition('.')
    (config[section] if section else config)[name] = value
  return config


def tiny_shapes_flags(data_dir: str) -> list[str]:
  """The command-line flags of `tiny_shapes_config`, for the programs."""
  return ['--config=configs/shapes.py', f'--config.data_dir={data_dir}',
          *(f'--config.{key}={value}' for key, value in TINY_SHAPES.items())]


@pytest.fixture(scope='session')
def shapes_dir(tmp_path_factory) -> str:
  """A TFDS data directory holding the built `shapes` dataset."""
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  datasets.prepare_builder(datasets.get('shapes'), data_dir)
  return data_dir


@pytest.fixture(scope='session')
def tiny_checkpoint(shapes_dir, tmp_path_factory):
  """(config, workdir) of the tiny shapes model trained for its 4 steps, checkpoints included
  (the same programs as other tests' tiny runs: compiled once, in the shared XLA cache)."""
  from deeplab_jax import train  # pylint: disable=g-import-not-at-top
  config = tiny_shapes_config(shapes_dir)
  workdir = str(tmp_path_factory.mktemp('tiny_checkpoint'))
  train.train_and_evaluate(config, workdir)
  return config, workdir
