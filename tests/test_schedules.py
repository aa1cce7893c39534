"""The poly and step learning rates with warmup against their formulas."""

import numpy as np
import pytest

from deeplab_jax import defaults
from deeplab_jax.config_error import ConfigError
from deeplab_jax.schedules import create_learning_rate_schedule


def test_poly_without_warmup():
  config = defaults.get_config()
  config.learning_rate, config.num_train_steps, config.lr_power = 0.007, 1000, 0.9
  schedule = create_learning_rate_schedule(config)
  for step in (0, 1, 250, 999, 1000):
    np.testing.assert_allclose(schedule(step), 0.007 * (1 - step / 1000)**0.9, rtol=1e-5,
                               atol=1e-9)


def test_linear_warmup_then_poly():
  config = defaults.get_config()
  config.learning_rate, config.num_train_steps, config.warmup_steps = 0.1, 1100, 100
  schedule = create_learning_rate_schedule(config)
  np.testing.assert_allclose([schedule(0), schedule(50)], [0.0, 0.05], atol=1e-7)
  for step in (100, 600, 1100):
    np.testing.assert_allclose(schedule(step), 0.1 * (1 - (step - 100) / 1000)**0.9, rtol=1e-5,
                               atol=1e-9)


def test_step_schedule_as_deeplab_v1():
  # Chen et al. 2015: lr 0.001, multiplied by 0.1 every 2000 iterations.
  config = defaults.get_config()
  config.lr_schedule, config.learning_rate, config.num_train_steps = 'step', 0.001, 6000
  config.lr_step_size, config.lr_step_factor = 2000, 0.1
  schedule = create_learning_rate_schedule(config)
  for step, expected in ((0, 1e-3), (1999, 1e-3), (2000, 1e-4), (3999, 1e-4), (4000, 1e-5),
                         (6000, 1e-6)):
    np.testing.assert_allclose(schedule(step), expected, rtol=1e-5)
  config.warmup_steps = 100
  schedule = create_learning_rate_schedule(config)
  np.testing.assert_allclose([schedule(50), schedule(100), schedule(2100)], [5e-4, 1e-3, 1e-4],
                             rtol=1e-5)


def test_an_unknown_schedule_is_a_config_error():
  config = defaults.get_config()
  config.lr_schedule = 'cosine'
  with pytest.raises(ConfigError, match=r"config.lr_schedule='cosine': unknown"):
    create_learning_rate_schedule(config)
