"""Process start for the command-line tools and notebooks, before anything touches a device:
TensorFlow kept off the accelerators, the number of JAX CPU devices, quieter Orbax logs.

The library itself changes no global state when imported.
"""

import logging as python_logging
import math
import os

from absl import logging
import jax
import ml_collections
import tensorflow as tf


def initialize(cpu_devices: int | None = None) -> None:
  """Hides accelerators from TensorFlow (it only feeds the host: they belong to JAX) and, when
  given, splits the CPU into `cpu_devices` JAX devices (used only where no accelerator is)."""
  tf.config.set_visible_devices([], 'GPU')
  if cpu_devices:
    jax.config.update('jax_num_cpu_devices', cpu_devices)
  quiet_orbax_info_logs()


def default_cpu_devices(config: ml_collections.ConfigDict) -> int:
  """The most CPU cores that evenly split both the train and eval batches: on a laptop, data
  parallelism over the cores is faster than one device using them all."""
  batches = math.gcd(config.batch_size, config.eval_batch_size)
  return max(n for n in range(1, (os.cpu_count() or 1) + 1) if batches % n == 0)


def quiet_orbax_info_logs() -> None:
  """Orbax logs every step of every save at INFO; keep its warnings and errors only."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname)
