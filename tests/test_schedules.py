"""The poly learning rate with warmup against its formula."""

import numpy as np

from deeplab_jax import defaults
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
