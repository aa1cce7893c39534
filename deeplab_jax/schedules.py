"""DeepLab's learning rate schedules, poly (v2 onwards) or step (v1), with optional linear
warmup."""

import ml_collections
import optax

from deeplab_jax.config_error import ConfigError

SCHEDULES = ('poly', 'step')


def create_learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """After `warmup_steps` of linear increase from 0, 'poly': lr(step) = base * (1 - step /
  num_train_steps) ** power, ending at `end_learning_rate`; 'step': base * lr_step_factor **
  (step // lr_step_size)."""
  if not 0 <= config.warmup_steps < config.num_train_steps:
    raise ConfigError('warmup_steps', config.warmup_steps,
                      f'must be at least 0 and below num_train_steps={config.num_train_steps}',
                      max(0, config.num_train_steps // 10))
  decay_steps = config.num_train_steps - config.warmup_steps
  if config.lr_schedule == 'poly':
    decay = optax.polynomial_schedule(
        init_value=config.learning_rate, end_value=config.end_learning_rate,
        power=config.lr_power, transition_steps=decay_steps)
  elif config.lr_schedule == 'step':
    if config.lr_step_size < 1:
      raise ConfigError('lr_step_size', config.lr_step_size, 'must be at least 1', 2_000)
    decay = optax.exponential_decay(config.learning_rate, config.lr_step_size,
                                    config.lr_step_factor, staircase=True)
  else:
    raise ConfigError('lr_schedule', config.lr_schedule, f'unknown; expected one of {SCHEDULES}',
                      'poly')
  if not config.warmup_steps:
    return decay
  warmup = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
  return optax.join_schedules([warmup, decay], boundaries=[config.warmup_steps])
