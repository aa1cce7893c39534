"""Training: `train_and_evaluate`, the whole loop around `train_state`'s jitted train step."""

import contextlib
import time

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import ml_collections
import numpy as np
import tensorflow as tf

from deeplab_jax import checkpointing
from deeplab_jax import evaluate
from deeplab_jax import experiment
from deeplab_jax import pretrained
from deeplab_jax import sharding
from deeplab_jax import workdir_lock
from deeplab_jax.config_error import ConfigError
from deeplab_jax.data import class_weights
from deeplab_jax.data import input_pipeline
from deeplab_jax.models import create_model
from deeplab_jax.models.cost import count_params
from deeplab_jax.train_state import (TrainState, abstract_train_state, create_train_state,
                                     jit_train_step, make_train_step)


def itstime(step: int, every: int, total: int) -> bool:
  """Whether a periodic action runs at `step`: every `every` steps, and at the last one."""
  return step % every == 0 or step == total


class TrainingDiverged(RuntimeError):
  """The loss or the gradient stopped being finite (see `config.skip_nonfinite_steps`)."""


def nonfinite_steps(metrics: list[dict[str, np.ndarray]], first_step: int) -> list[int]:
  """The steps among `metrics` (of steps first_step, first_step + 1, ...) that were not finite."""
  return [first_step + index for index, values in enumerate(metrics) if not values['finite']]


def diverged(metrics: list[dict[str, np.ndarray]], first_step: int, bad_step: int,
             manager) -> TrainingDiverged:
  """The error for non-finite `bad_step` among `metrics` (of steps first_step, ...): its values
  and the last good checkpoint."""
  values = metrics[bad_step - first_step]
  checkpointing.wait_until_saved(manager)
  last = manager.latest_step()
  restart = (f'the last good checkpoint is step {last} in {manager.directory}; nothing after '
             f'step {bad_step - 1} was saved' if last is not None else 'no checkpoint was saved')
  return TrainingDiverged(
      f'training diverged at step {bad_step}: loss {float(values["loss"])}, gradient norm '
      f'{float(values["grad_norm"])}; {restart}. Lower config.learning_rate, or set '
      'config.skip_nonfinite_steps=True to skip such steps.')


def write_train_summaries(writer: metric_writers.MetricWriter, step: int,
                          metrics: list[dict[str, np.ndarray]], skipped: list[int]) -> None:
  """train/ averages over the finite steps of `metrics`, and how many were skipped."""
  finite = [values for values in metrics if values['finite']]
  scalars = {f'train/{key}': float(np.mean([values[key] for values in finite]))
             for key in metrics[0] if key != 'finite'} if finite else {}
  if skipped:
    logging.warning('Skipped %d steps with a non-finite loss or gradient: %s', len(skipped),
                    skipped)
  writer.write_scalars(step, {**scalars, 'train/skipped_steps': len(skipped)})


# Keys whose change would make a resumed run train another model, on other data, or with an
# optimizer state of another structure.
RESUME_FIXED_KEYS = ('model.', 'dataset', 'folder.', 'train_split', 'crop_size', 'min_scale',
                     'max_scale', 'flip', 'batch_size', 'ignore_label', 'seed',
                     'learning_rate_multipliers', 'focus_crop_', 'ema_decay', 'optimizer')


def check_resumed(config: ml_collections.ConfigDict, workdir: str, manager, step: int,
                  params) -> None:
  """Fails before training if checkpoint `step` holds another model than `config`'s (abstract
  `params`), or if `config` differs from the workdir's config.json in a key that changes the
  model, the data or the optimizer state's structure; logs the changes that are safe."""
  path = tf.io.gfile.join(workdir, 'config.json')
  changes = checkpointing.config_changes(config, workdir)
  fixed = [key for key in changes or {} if key.startswith(RESUME_FIXED_KEYS)]
  try:
    checkpointing.check_same_params(manager, step, params, 'resume_step')
  except checkpointing.CheckpointMismatch as error:
    differ = ('the config keys that differ from its config.json: ' + ', '.join(
        f'{key} ({changes[key][0]!r} -> {changes[key][1]!r})' for key in fixed)
              if changes is not None else f'{path} is missing, to say which config keys differ')
    raise checkpointing.CheckpointMismatch(f'{error}; {differ}. Use another --workdir, or the '
                                           'config it was trained with.') from None
  if fixed:
    saved, current = changes[fixed[0]]
    raise ConfigError(fixed[0], current,
                      f'the checkpoints in {workdir} were trained with {saved!r} '
                      f'(its config.json); keys that change the model, the data or the '
                      f'optimizer state cannot change on resuming, and these do: '
                      f'{", ".join(fixed)}. Use another --workdir, or the saved value', saved)
  if changes:
    logging.info('Resuming with changed %s', ', '.join(
        f'{key}: {saved!r} -> {current!r}' for key, (saved, current) in changes.items()))


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """<workdir>/config.json: the whole config of the run (`workdir` may be gs://)."""
  tf.io.gfile.makedirs(workdir)
  with tf.io.gfile.GFile(tf.io.gfile.join(workdir, 'config.json'), 'w') as file:
    file.write(config.to_json_best_effort(indent=2))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the state.

  Every process of a multi-process job runs it; process 0 alone writes summaries and files, and
  holds the workdir's lock so that a second job refuses to share it.
  """
  lock = (workdir_lock.WorkdirLock(workdir) if jax.process_index() == 0
          else contextlib.nullcontext())
  with lock:
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  info, builder, mesh = experiment.prepare(config)
  weights = experiment.first_process_first(
      lambda: class_weights.class_weights(config, info, builder), 'class weights')
  experiment.check_workdir(workdir)
  manager = checkpointing.create_manager(workdir, config.max_checkpoints_to_keep)
  model = create_model(config.model)
  abstract_state = abstract_train_state(config, model, mesh)
  if config.resume_step is not None and config.resume_step not in manager.all_steps():
    raise ConfigError('resume_step', config.resume_step, f'{manager.directory} holds no '
                      f'checkpoint of that step, only of {sorted(manager.all_steps())}',
                      manager.latest_step())
  resume_step = config.resume_step or manager.latest_step()
  if resume_step is not None:
    check_resumed(config, workdir, manager, resume_step, abstract_state.params)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if jax.process_index() == 0:
    write_config(config, workdir)

  state, start_step = checkpointing.restore_latest(manager, abstract_state, resume_step)
  checkpointing.set_aside_after(manager, start_step)
  if start_step == 0:
    state = create_train_state(config, model, mesh, config.seed)
    if config.init_from:
      state, _ = pretrained.initialize_from(state, config.init_from, mesh)
  if start_step >= config.num_train_steps:
    logging.info('Checkpoint step %d already reaches num_train_steps=%d: nothing to train.',
                 start_step, config.num_train_steps)
    return state
  logging.info('%s on %s: %d parameters; training steps %d..%d', config.model.architecture,
               config.model.backbone, count_params(state.params), start_step + 1,
               config.num_train_steps)

  train_iter = input_pipeline.as_numpy(
      input_pipeline.create_train_dataset(config, info, builder, start_step=start_step))
  evaluator = evaluate.Evaluator(config, info, builder, model, mesh)

  batch = sharding.shard_batch(next(train_iter), mesh)
  compile_start = time.perf_counter()
  train_step = jit_train_step(make_train_step(config, model, weights), mesh)
  train_step = train_step.lower(state, batch).compile()
  logging.info('Compiled the train step in %.1f s', time.perf_counter() - compile_start)

  report_progress = periodic_actions.ReportProgress(
      num_train_steps=config.num_train_steps, writer=writer, every_steps=config.log_every_steps,
      every_secs=None)
  stop_request = checkpointing.StopRequest(manager)
  train_metrics = []
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        if step > start_step + 1:
          batch = sharding.shard_batch(next(train_iter), mesh)
        state, metrics = train_step(state, batch)
        train_metrics.append(metrics)
      report_progress(step)

      stopping = stop_request(step)
      log = itstime(step, config.log_every_steps, config.num_train_steps)
      evaluate_now = itstime(step, config.eval_every_steps, config.num_train_steps)
      save = itstime(step, config.checkpoint_every_steps, config.num_train_steps) or stopping
      if log or evaluate_now or save:  # Reads the device's metrics only at these steps.
        host_metrics = jax.device_get(train_metrics)
        first_step = step - len(host_metrics) + 1
        skipped = nonfinite_steps(host_metrics, first_step)
        if skipped and not config.skip_nonfinite_steps:
          raise diverged(host_metrics, first_step, skipped[0], manager)

      if log:
        write_train_summaries(writer, step, host_metrics, skipped)
        train_metrics = []

      if evaluate_now:
        with report_progress.timed('eval'):
          evaluator(state.eval_variables, step, writer, tf.io.gfile.join(workdir, 'eval'))

      if save:
        with report_progress.timed('checkpoint'):
          checkpointing.save(manager, step, state)
      if stopping:
        logging.warning('Stopped at step %d; run again with the same workdir to resume.', step)
        break
  finally:
    stop_request.restore_handlers()
    checkpointing.wait_until_saved(manager)
    writer.flush()
  return state
