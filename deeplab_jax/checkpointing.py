"""Orbax checkpoints of the train state: async saves, restore onto the current shardings,
and a save when the job is told to stop (SIGTERM on a preempted TPU VM, or Ctrl-C). Serving
restores the model variables of a train checkpoint alone (`restore_model`). Also the
stand-alone model variables that converted or pretrained weights are kept as.

All Orbax calls live here, so a move to Orbax's v1 API touches this file only.
"""

import contextlib
import json
import logging as python_logging
import signal
import threading
import time
from typing import Any

from absl import logging
from etils import epath
from flax import traverse_util
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from deeplab_jax import sharding
from deeplab_jax.models import abstract_variables, create_model


# Orbax writes a replicated array from all of its replicas, a slice each, and each slice is a
# program compiled per array shape and device: 88 compiles, 20 of the 50 s of the tests' tiny
# training run on 4 CPU devices. Arrays whose slices would be under 1 MiB (BatchNorm vectors,
# most kernels of small models) are written whole by one replica; larger ones keep the split.
# (Orbax's default handler also records the implementation of PRNG key arrays: a train state
# holds none.)
MIN_SLICE_BYTES = 2 ** 20


def set_min_slice_bytes(min_slice_bytes: int) -> None:
  """Replicated arrays whose slice per replica would be under `min_slice_bytes` are written
  whole by one replica (0: every array split, as Orbax does by default)."""
  handler = ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=min_slice_bytes)
  absl_logger = logging.get_absl_logger()
  level = absl_logger.level
  absl_logger.setLevel(python_logging.ERROR)  # Orbax warns that it replaces its own.
  try:
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
  finally:
    absl_logger.setLevel(level)


set_min_slice_bytes(MIN_SLICE_BYTES)


def absolute(path: str) -> epath.Path:
  """`path` made absolute, as Orbax needs; gs:// paths stay as they are."""
  path = epath.Path(path)
  return path if path.is_absolute() else path.absolute()


def checkpoint_dir(workdir: str) -> epath.Path:
  return absolute(workdir) / 'checkpoints'


def create_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  """Checkpoints under <workdir>/checkpoints, saved asynchronously, `max_to_keep` kept."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def _checked_step(manager: ocp.CheckpointManager, step: int | None) -> int | None:
  """`step` (default: the latest, None if there is none), which must have a checkpoint."""
  step = manager.latest_step() if step is None else step
  if step is not None and step not in manager.all_steps():
    raise ValueError(f'No checkpoint of step {step} in {manager.directory}; there are '
                     f'{sorted(manager.all_steps())}')
  return step


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be read (damaged, or of another model) or written."""


class CheckpointMismatch(CheckpointError):
  """A checkpoint of another model: a parameter's path or shape differs."""


def first_line(error: Exception) -> str:
  """The first line of `error`'s message, or its type's name if it has none."""
  return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _previous_step(manager: ocp.CheckpointManager, step: int) -> int | None:
  return max((s for s in manager.all_steps() if s < step), default=None)


@contextlib.contextmanager
def _damage_named(manager: ocp.CheckpointManager, step: int, fallback_key: str):
  """A failure to read checkpoint `step` as a CheckpointError naming it, with the way back to
  the previous one (`fallback_key`: the config key that picks a step)."""
  try:
    yield
  except CheckpointError:
    raise
  except Exception as error:  # Orbax and TensorStore raise many kinds on damaged files.
    previous = _previous_step(manager, step)
    fallback = (f'use the previous checkpoint, step {previous}, with '
                f'--config.{fallback_key}={previous}' if previous is not None else
                'it is the only one: delete it, or use another --workdir, to start over')
    cause = error
    while cause.__cause__ is not None:  # Orbax wraps TensorStore's error, which names the file.
      cause = cause.__cause__
    raise CheckpointError(f'Checkpoint step {step} in {manager.directory} is damaged: '
                          f'{first_line(cause)}. To go on, {fallback}.') from error


def check_same_params(manager: ocp.CheckpointManager, step: int, params: Any,
                      fallback_key: str) -> None:
  """Raises CheckpointError naming the first parameter whose path or shape differs between
  checkpoint `step` and `params` (arrays or ShapeDtypeStructs): another model's checkpoint."""
  path = manager.directory / str(step) / 'default'
  with _damage_named(manager, step, fallback_key):
    saved = traverse_util.flatten_dict(_saved_tree(path)['params'], sep='/')
  wanted = traverse_util.flatten_dict(params, sep='/')
  for name in sorted(saved.keys() | wanted.keys()):
    saved_shape, wanted_shape = (tuple(tree[name].shape) if name in tree else 'absent'
                                 for tree in (saved, wanted))
    if saved_shape != wanted_shape:
      raise CheckpointMismatch(f'Checkpoint step {step} in {manager.directory} holds another '
                               f'model: params/{name} is {saved_shape} there and {wanted_shape} '
                               'in this config')


def restore_latest(manager: ocp.CheckpointManager, state: Any,
                   step: int | None = None) -> tuple[Any, int]:
  """(restored state, its step) from checkpoint `step` (default: the latest), or (state, 0)
  when there is none.

  `state` (arrays or `jax.ShapeDtypeStruct`s) gives the structure, dtypes and the shardings to
  restore onto, so a checkpoint written on one mesh loads on another.
  """
  step = _checked_step(manager, step)
  if step is None:
    return state, 0
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  logging.info('Restoring checkpoint of step %d from %s', step, manager.directory)
  with _damage_named(manager, step, 'resume_step'):
    return manager.restore(step, args=ocp.args.StandardRestore(target)), step


def set_aside_after(manager: ocp.CheckpointManager, step: int) -> None:
  """Moves the checkpoints after `step` to <workdir>/checkpoints_set_aside/, so that training
  resumed from `step` writes its own; nothing is deleted."""
  newer = sorted(s for s in manager.all_steps() if s > step)
  if not newer:
    return
  aside = manager.directory.parent / 'checkpoints_set_aside'
  if jax.process_index() == 0:
    aside.mkdir(exist_ok=True)
    for newer_step in newer:
      (manager.directory / str(newer_step)).rename(aside / f'{newer_step}-{time.time_ns()}')
    logging.warning('Resuming from step %d: moved the checkpoints of steps %s to %s.', step,
                    newer, aside)
  multihost_utils.sync_global_devices('checkpoints set aside')
  manager.reload()


def restore_variables(workdir: str, variables: Any, step: int | None = None,
                      averaged: bool = False) -> tuple[Any, int]:
  """(model variables, step) of train checkpoint `step` (default: the latest) of `workdir`.

  Only 'params' and 'batch_stats' are read, onto `variables` (arrays or ShapeDtypeStructs with
  shardings), or with `averaged` their moving average (`config.ema_decay`); the optimizer
  state is not, so serving needs no optimizer.
  """
  if not checkpoint_dir(workdir).is_dir():
    raise ValueError(f'{workdir} holds no checkpoint (no {checkpoint_dir(workdir)})')
  manager = ocp.CheckpointManager(checkpoint_dir(workdir))
  try:
    step = _checked_step(manager, step)
    if step is None:
      raise ValueError(f'{workdir} holds no checkpoint')
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, variables)
    if target is not None:  # None restores whatever the checkpoint holds.
      check_same_params(manager, step, target['params'], 'eval.checkpoint_step')
    if averaged:
      with _damage_named(manager, step, 'eval.checkpoint_step'):
        if not _saved_tree(manager.directory / str(step) / 'default').get('ema'):
          raise CheckpointMismatch(f'Checkpoint step {step} in {manager.directory} holds no '
                                   'moving average of the variables (it was trained with '
                                   'ema_decay=0): evaluate it with --config.ema_decay=0')
      target = {'ema': target}
    logging.info('Restoring the model variables%s of step %d from %s',
                 ' (their moving average)' if averaged else '', step, manager.directory)
    with _damage_named(manager, step, 'eval.checkpoint_step'):
      restored = manager.restore(step, args=ocp.args.PyTreeRestore(
          item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True))
  finally:
    manager.close()
  return (restored['ema'] if averaged else restored), step


def restore_model(config: ml_collections.ConfigDict, workdir: str,
                  mesh: jax.sharding.Mesh) -> tuple[Any, Any, int]:
  """(model, variables replicated on `mesh`, step) of checkpoint `config.eval.checkpoint_step`
  (default: the latest) of `workdir`, for evaluation, prediction and export. A workdir with no
  checkpoint and a `config.init_from` gives the variables there (converted weights), as step 0.
  """
  model = create_model(config.model)
  # The variables' shapes do not depend on the image size: any that the model takes will do.
  target = abstract_variables(model, tuple(config.crop_size), sharding.replicated(mesh))
  directory = checkpoint_dir(workdir)
  if config.init_from and not (directory.is_dir() and any(directory.iterdir())):
    logging.info('%s holds no checkpoint: the variables of init_from=%s', workdir,
                 config.init_from)
    return model, variables_in(config.init_from, target), 0
  variables, step = restore_variables(workdir, target, config.eval.checkpoint_step,
                                      averaged=bool(config.ema_decay))
  changes = config_changes(config, workdir) or {}
  model_changes = [key for key in changes if key.startswith('model.')]
  if model_changes:  # Legitimate (train at output stride 16, evaluate at 8), but silent if a slip.
    logging.warning('The model of %s was trained with other %s', workdir, ', '.join(
        f'{key} ({changes[key][0]!r}, now {changes[key][1]!r})' for key in model_changes))
  return model, variables, step


def config_changes(config: ml_collections.ConfigDict,
                   workdir: str) -> dict[str, tuple[Any, Any]] | None:
  """{'model.output_stride': (16, 8), ...}: each flattened key whose value in <workdir>/config.json
  (the run's, as training wrote it) differs from `config`'s, sorted; None if there is no file."""
  path = absolute(workdir) / 'config.json'
  if not path.exists():
    return None
  flat = lambda tree: traverse_util.flatten_dict(tree, sep='.')
  saved = flat(json.loads(path.read_text()))
  current = flat(json.loads(config.to_json_best_effort()))
  return {key: (saved.get(key), current.get(key)) for key in sorted(saved.keys() | current.keys())
          if saved.get(key) != current.get(key)}


def variables_in(directory: str, target: Any) -> Any:
  """The variables `save_variables` wrote in `directory`, placed as `target`'s
  ShapeDtypeStructs; each must be there with its shape (what `target` lacks is left out)."""
  loaded = traverse_util.flatten_dict(load_variables(directory), sep='/')
  placed = {}
  for path, spec in traverse_util.flatten_dict(target, sep='/').items():
    if path not in loaded:
      raise CheckpointMismatch(f'{directory} holds no {path} {spec.shape}: its variables are '
                               'not those of the model config.model describes')
    if loaded[path].shape != spec.shape:
      raise CheckpointMismatch(f'{directory}: {path} has shape {loaded[path].shape}, the model '
                               f'config.model describes {spec.shape}')
    placed[path] = jax.device_put(np.asarray(loaded[path], spec.dtype), spec.sharding)
  return traverse_util.unflatten_dict(placed, sep='/')


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Starts an asynchronous save of `state` at `step` (a no-op if that step is saved); raises
  CheckpointError if this or the previous save failed."""
  if step not in manager.all_steps():
    with _failed_saves_named(manager):
      manager.save(step, args=ocp.args.StandardSave(state), force=True)


def wait_until_saved(manager: ocp.CheckpointManager) -> None:
  """Waits for the save under way; raises CheckpointError if it failed."""
  with _failed_saves_named(manager):
    manager.wait_until_finished()


@contextlib.contextmanager
def _failed_saves_named(manager: ocp.CheckpointManager):
  """A failed (asynchronous) save as a CheckpointError naming the checkpoints left intact."""
  try:
    yield
  except Exception as error:  # The writer's own error (e.g. OSError: no space left on device).
    raise CheckpointError(
        f'Saving a checkpoint in {manager.directory} failed: {first_line(error)}. The complete '
        f'checkpoints, steps {sorted(manager.all_steps())}, are untouched; free space (or fix '
        'the error) and run again to resume from the newest.') from error


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
  checkpointer.save(absolute(directory) / 'variables', variables)
  checkpointer.wait_until_finished()


def load_variables(directory: str) -> Any:
  """The variables `save_variables` wrote, as numpy arrays on the host (any mesh can use them)."""
  path = epath.Path(directory) / 'variables'
  if not path.is_dir():
    raise FileNotFoundError(f'{directory} holds no model variables (expected {path}); write '
                            'them with `python -m deeplab_jax.convert`')
  return load_arrays(path)


def load_arrays(path: epath.Path) -> Any:
  """The tree of arrays of a standard Orbax checkpoint item (e.g. <step>/default of a train
  checkpoint) as numpy arrays on the host, whatever mesh wrote it."""
  shapes = _saved_tree(path)
  return ocp.StandardCheckpointer().restore(
      path, jax.tree.map(lambda x: np.empty(x.shape, x.dtype), shapes))


def _saved_tree(path: epath.Path) -> Any:
  """The tree of array metadata (shape, dtype) of a standard Orbax checkpoint item."""
  metadata = ocp.StandardCheckpointer().metadata(path).item_metadata
  if metadata is None:
    raise FileNotFoundError(f'{path / "_METADATA"} is missing or unreadable')
  return metadata.tree
