"""TPU defaults: bfloat16 compute on TPU only, and the VOC recipe's batches on slices of up to
16 chips, with an error naming the key and a working value beyond."""

import jax
import jax.numpy as jnp
import pytest

from conftest import load_config
from deeplab_jax import experiment
from deeplab_jax.data import datasets
from deeplab_jax.models import compute_dtype, create_model


def test_auto_dtype_is_bfloat16_on_tpu_only(monkeypatch):
  config = load_config('voc').model
  assert config.dtype == 'auto'
  assert create_model(config).dtype == jnp.float32  # This CPU.
  monkeypatch.setattr(jax, 'default_backend', lambda: 'tpu')
  assert create_model(config).dtype == jnp.bfloat16
  assert compute_dtype('float32') == jnp.float32
  with pytest.raises(ValueError, match="model.dtype='float16': unknown"):
    compute_dtype('float16')


@pytest.mark.parametrize('devices', [1, 2, 4, 8, 16])
def test_voc_recipe_fits_slices_of_up_to_16_chips(devices, monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: devices)
  experiment.check_config(load_config('voc'))


def test_larger_slices_are_told_a_batch_size_that_works(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 32)
  with pytest.raises(ValueError, match=r'config.batch_size=16: does not split evenly over the 32 '
                     r'devices; e.g. --config.batch_size=32'):
    experiment.check_config(load_config('voc'))
