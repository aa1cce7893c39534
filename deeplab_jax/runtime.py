"""Process start for the command-line tools and notebooks, before anything touches a device:
joining a multi-process job, TensorFlow kept off the accelerators, the number of JAX CPU devices,
quieter Orbax logs.

The library itself changes no global state when imported.
"""

import glob
import importlib.util
import logging as python_logging
import math
import os

from absl import logging
import jax
import ml_collections

GOOGLE_PCI_VENDOR = '0x1ae0'  # The PCI vendor of TPU chips.
HEARTBEAT_TIMEOUT_SECONDS = 30  # A process silent this long is dead: the others stop too.


def initialize(cpu_devices: int | None = None, *, join: bool = True, tensorflow: bool = True,
               coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None,
               heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_SECONDS) -> None:
  """Readies this process: call it first, before anything touches a device.

  Joins the multi-process job (unless not `join`): the one `coordinator_address`,
  `num_processes` and `process_id` describe, or on a Cloud TPU VM the one JAX detects (every
  worker of a pod slice runs the same command); elsewhere, with none of them, it stays a single
  process. Hides accelerators from TensorFlow (it only feeds the host: they belong to JAX) where
  it is installed, unless the process will not use it (`tensorflow=False`, never importing it)
  and, when given, splits the CPU into `cpu_devices` JAX devices (used only where no accelerator
  is).
  """
  if tensorflow and importlib.util.find_spec('tensorflow'):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], 'GPU')
  if cpu_devices:
    jax.config.update('jax_num_cpu_devices', cpu_devices)
  quiet_orbax_info_logs()
  if not join:
    return
  join_job(coordinator_address, num_processes, process_id, heartbeat_timeout_seconds)
  logging.info('JAX process %d of %d: %d local devices of %d (%s)', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].device_kind)


def join_job(coordinator_address: str | None, num_processes: int | None,
             process_id: int | None, heartbeat_timeout_seconds: int) -> None:
  """`jax.distributed.initialize` with explicit settings, or with JAX's detection on a Cloud
  TPU VM; nothing on a machine without TPUs and with no settings (a laptop, one GPU host)."""
  explicit = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
              'process_id': process_id}
  if any(value is not None for value in explicit.values()):
    missing = [name for name, value in explicit.items() if value is None]
    if missing:
      raise ValueError(f'A multi-process job needs all of --coordinator_address, '
                       f'--num_processes and --process_id; missing: {missing}')
    jax.distributed.initialize(**explicit, heartbeat_timeout_seconds=heartbeat_timeout_seconds)
  elif has_tpu_chips():
    try:
      jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout_seconds)
    except ValueError as error:  # No TPU pod detected (e.g. Colab): one process.
      logging.info('Single process: %s', error)


def has_tpu_chips() -> bool:
  """Whether a Google PCI device is attached: TPU chips on a Cloud TPU VM or Colab TPU runtime.

  Google's network cards (gVNIC) report the same vendor; there JAX's detection finds no TPU
  pod and the process stays single.
  """
  for path in glob.glob('/sys/bus/pci/devices/*/vendor'):
    with open(path) as file:
      if file.read().strip() == GOOGLE_PCI_VENDOR:
        return True
  return False


def default_cpu_devices(config: ml_collections.ConfigDict) -> int:
  """The most CPU cores that evenly split both the train and eval batches: on a laptop, data
  parallelism over the cores is faster than one device using them all."""
  batches = math.gcd(config.batch_size, config.eval_batch_size)
  return max(n for n in range(1, (os.cpu_count() or 1) + 1) if batches % n == 0)


def quiet_orbax_info_logs() -> None:
  """Orbax logs every step of every save at INFO; keep its warnings and errors only."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname)
