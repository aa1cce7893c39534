"""The poly learning rate of DeepLab, with optional linear warmup."""

import ml_collections
import optax

from deeplab_jax.config_error import ConfigError


def create_learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """lr(step) = base * (1 - step / num_train_steps) ** power, after `warmup_steps` of linear
  increase from 0; it ends at `end_learning_rate`."""
  if not 0 <= config.warmup_steps < config.num_train_steps:
    raise ConfigError('warmup_steps', config.warmup_steps,
                      f'must be at least 0 and below num_train_steps={config.num_train_steps}',
                      max(0, config.num_train_steps // 10))
  poly = optax.polynomial_schedule(
      init_value=config.learning_rate, end_value=config.end_learning_rate,
      power=config.lr_power, transition_steps=config.num_train_steps - config.warmup_steps)
  if not config.warmup_steps:
    return poly
  warmup = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
  return optax.join_schedules([warmup, poly], boundaries=[config.warmup_steps])
