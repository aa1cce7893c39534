"""Orbax checkpoints of the train state: async saves, restore onto the current shardings,
and a save when the job is told to stop (SIGTERM on a preempted TPU VM, or Ctrl-C). Also the
stand-alone model variables that converted or pretrained weights are kept as.

All Orbax calls live here, so a move to Orbax's v1 API touches this file only.
"""

import os
import signal
import threading
from typing import Any

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp


def create_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  """Checkpoints under <workdir>/checkpoints, saved asynchronously, `max_to_keep` kept."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options)


def restore_latest(manager: ocp.CheckpointManager, state: Any,
                   step: int | None = None) -> tuple[Any, int]:
  """(restored state, its step) from checkpoint `step` (default: the latest), or (state, 0)
  when there is none.

  `state` (arrays or `jax.ShapeDtypeStruct`s) gives the structure, dtypes and the shardings to
  restore onto, so a checkpoint written on one mesh loads on another.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    return state, 0
  steps = manager.all_steps()
  if step not in steps:
    raise ValueError(f'No checkpoint of step {step} in {manager.directory}; there are '
                     f'{sorted(steps)}')
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  logging.info('Restoring checkpoint of step %d from %s', step, manager.directory)
  return manager.restore(step, args=ocp.args.StandardRestore(target)), step


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Starts an asynchronous save of `state` at `step` (a no-op if that step is saved)."""
  if step not in manager.all_steps():
    manager.save(step, args=ocp.args.StandardSave(state), force=True)


class StopRequest:
  """Tells the training loop to save and stop: on SIGTERM/SIGINT in a single process, or at
  JAX's preemption sync point when several processes run (all stop at the same step)."""

  def __init__(self, manager: ocp.CheckpointManager):
    self._manager = manager
    self._signal = None
    self._handles_signals = (jax.process_count() == 1 and
                             threading.current_thread() is threading.main_thread())
    if self._handles_signals:
      for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, self._on_signal)

  def _on_signal(self, signum, frame):
    del frame
    if self._signal is not None:  # A second signal: stop right now.
      raise KeyboardInterrupt
    self._signal = signal.Signals(signum).name
    logging.warning('Received %s: saving a checkpoint and stopping after this step.',
                    self._signal)

  def __call__(self, step: int) -> bool:
    return self._signal is not None or self._manager.reached_preemption(step)

  def restore_handlers(self) -> None:
    if self._handles_signals:
      signal.signal(signal.SIGTERM, signal.SIG_DFL)
      signal.signal(signal.SIGINT, signal.default_int_handler)


def save_variables(directory: str, variables: Any) -> None:
  """Writes model variables ({'params': ..., 'batch_stats': ...}) to <directory>/variables."""
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(epath.Path(directory).absolute() / 'variables', variables)
  checkpointer.wait_until_finished()


def load_variables(directory: str) -> Any:
  """The variables `save_variables` wrote, as numpy arrays on the host (any mesh can use them)."""
  path = epath.Path(directory) / 'variables'
  if not path.is_dir():
    raise FileNotFoundError(f'{directory} holds no model variables (expected {path}); write '
                            'them with `python -m deeplab_jax.convert`')
  checkpointer = ocp.StandardCheckpointer()
  shapes = checkpointer.metadata(path).item_metadata.tree
  return checkpointer.restore(path, jax.tree.map(lambda x: np.empty(x.shape, x.dtype), shapes))
