"""Training: the train state, a pure `train_step`, and `train_and_evaluate`, the whole loop."""

from collections.abc import Callable
import json
import os
import time
from typing import Any

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from deeplab_jax import checkpointing
from deeplab_jax import evaluate
from deeplab_jax import losses
from deeplab_jax import pretrained
from deeplab_jax import schedules
from deeplab_jax import sharding
from deeplab_jax import visualize
from deeplab_jax.data import datasets
from deeplab_jax.data import input_pipeline
from deeplab_jax.models import create_model
from deeplab_jax.models.cost import count_params


class TrainState(train_state.TrainState):
  """Step, params, optimizer state, and the BatchNorm running statistics."""
  batch_stats: Any


# ---------------------------------------------------------------------------------------------
# State and step.
# ---------------------------------------------------------------------------------------------


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD with momentum on the poly schedule; weight decay on convolution kernels only."""
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == 'kernel', params)
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
      optax.sgd(schedules.create_learning_rate_schedule(config), momentum=config.momentum))


def create_train_state(config: ml_collections.ConfigDict, model, mesh: jax.sharding.Mesh,
                       seed: int) -> TrainState:
  """Initialises the state directly replicated on `mesh`.

  Parameters are drawn with the 'rbg' generator: on CPU it compiles in a quarter of the time
  threefry takes for the same initialisation.
  """
  return jax.jit(_state_initializer(config, model, seed),
                 out_shardings=sharding.replicated(mesh))()


def abstract_train_state(config: ml_collections.ConfigDict, model,
                         mesh: jax.sharding.Mesh) -> TrainState:
  """The train state's shapes, dtypes and replicated shardings, computing nothing: what a
  checkpoint is restored onto."""
  shapes = jax.eval_shape(_state_initializer(config, model, config.seed))
  replicated = sharding.replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      shapes)


def _state_initializer(config: ml_collections.ConfigDict, model, seed: int) -> Callable:
  """init() -> a fresh TrainState at step 0."""

  def init():
    rng = jax.random.key(seed, impl='rbg')
    variables = model.init(rng, jnp.zeros((1, *config.crop_size, 3), jnp.float32), train=False)
    state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                              batch_stats=variables.get('batch_stats', {}),  # VGG has none.
                              tx=create_optimizer(config))
    return state.replace(step=jnp.zeros((), jnp.int32))

  return init


def make_train_step(config: ml_collections.ConfigDict) -> Callable:
  """train_step(state, batch) -> (state, metrics): one SGD step on the global batch."""
  schedule = schedules.create_learning_rate_schedule(config)

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    dropout_rng = jax.random.fold_in(jax.random.key(config.seed), state.step)

    def loss_fn(params):
      logits, updates = state.apply_fn(
          {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
          mutable=['batch_stats', 'intermediates'], rngs={'dropout': dropout_rng})
      loss = losses.softmax_cross_entropy(logits, batch['label'], config.ignore_label)
      if 'aux_logits' in updates.get('intermediates', {}):
        (aux_logits,) = updates['intermediates']['aux_logits']
        loss += config.aux_loss_weight * losses.softmax_cross_entropy(
            aux_logits, batch['label'], config.ignore_label)
      return loss, updates.get('batch_stats', {})

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {'loss': loss, 'learning_rate': schedule(state.step),
               'grad_norm': optax.tree.norm(grads)}
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics

  return train_step


def jit_train_step(train_step: Callable, mesh: jax.sharding.Mesh) -> Callable:
  """`train_step` under jit: state replicated and donated, batch split over the data axis."""
  replicated = sharding.replicated(mesh)
  return jax.jit(train_step, in_shardings=(replicated, sharding.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=0)


# ---------------------------------------------------------------------------------------------
# Checks and summaries.
# ---------------------------------------------------------------------------------------------


def check_config(config: ml_collections.ConfigDict, info: datasets.DatasetInfo) -> None:
  """Fails early, naming the key, on settings that cannot work together."""
  if config.model.num_classes != info.num_classes:
    raise ValueError(f'config.model.num_classes={config.model.num_classes}, but dataset '
                     f'{info.name!r} has {info.num_classes} classes')
  for key in ('batch_size', 'eval_batch_size'):
    if config[key] % jax.device_count():
      raise ValueError(f'config.{key}={config[key]} is not divisible by the number of devices '
                       f'({jax.device_count()})')
  if config.init_from and not epath.Path(config.init_from).is_dir():
    raise ValueError(f'config.init_from={config.init_from!r} is not a directory')
  for key in ('crop_size', 'eval_crop_size'):
    if len(config[key]) != 2 or min(config[key]) < 1:
      raise ValueError(f'config.{key}={config[key]} must be (height, width)')


def write_eval(writer: metric_writers.MetricWriter, step: int, matrix: np.ndarray,
               samples: dict[str, np.ndarray], config: ml_collections.ConfigDict,
               info: datasets.DatasetInfo) -> dict[str, float]:
  """Writes the scores, prediction panels, class legend and confusion matrix; returns scores."""
  summary = evaluate.summarize(matrix, info.class_names)
  writer.write_scalars(step, {f'eval/{key}': value for key, value in summary.items()})
  images = {'eval/confusion_matrix': visualize.confusion_image(matrix)[None],
            'eval/legend': visualize.legend(info.class_names, info.palette)[None]}
  if samples:
    pixels = np.asarray(samples['image']) * config.std_rgb + config.mean_rgb
    images['eval/image_label_prediction'] = visualize.prediction_panels(
        np.clip(pixels, 0, 255), samples['label'], samples['prediction'], info.palette,
        config.ignore_label)
  writer.write_images(step, images)
  logging.info('Evaluation at step %d:\n%s', step, evaluate.format_table(summary))
  return summary


# ---------------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------------


def prepare(config: ml_collections.ConfigDict):
  """(dataset info, its prepared TFDS builder, the device mesh), after checking the config."""
  info = datasets.get(config.dataset, config)
  check_config(config, info)
  mesh = sharding.create_mesh()
  logging.info('Mesh: %s over %d devices (%d processes)', dict(mesh.shape), jax.device_count(),
               jax.process_count())
  return info, datasets.prepare_builder(info, config.data_dir, config.manual_dir), mesh


def create_eval_step(config: ml_collections.ConfigDict, model, info: datasets.DatasetInfo,
                     mesh: jax.sharding.Mesh) -> Callable:
  """The jitted eval step with the inference options (scales, flip, windows) of config.eval."""
  eval_step = evaluate.make_eval_step(model.apply, info.num_classes, config.ignore_label,
                                      **evaluate.inference_options(config))
  return evaluate.jit_eval_step(eval_step, mesh)


def restore_checkpoint(config: ml_collections.ConfigDict, model, workdir: str,
                       mesh: jax.sharding.Mesh) -> tuple[TrainState, int]:
  """(state, step) of checkpoint `config.eval.checkpoint_step` of `workdir` (default: latest)."""
  manager = checkpointing.create_manager(workdir, config.max_checkpoints_to_keep)
  if manager.latest_step() is None:
    raise ValueError(f'{workdir} holds no checkpoint')
  restored = checkpointing.restore_latest(manager, abstract_train_state(config, model, mesh),
                                          config.eval.checkpoint_step)
  manager.close()
  return restored


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Evaluates checkpoint `config.eval.checkpoint_step` (default: the latest) of `workdir`.

  Writes the summary to TensorBoard under <workdir>/eval and to <workdir>/eval/<step>.json.
  """
  info, builder, mesh = prepare(config)
  model = create_model(config.model)
  state, step = restore_checkpoint(config, model, workdir, mesh)
  eval_ds, num_batches = input_pipeline.create_eval_dataset(config, info, builder)
  logging.info('Evaluating step %d: %d batches of %d on split %r', step, num_batches,
               config.eval_batch_size, config.eval_split)
  matrix, samples = evaluate.evaluate(
      create_eval_step(config, model, info, mesh),
      {'params': state.params, 'batch_stats': state.batch_stats},
      input_pipeline.as_numpy(eval_ds), mesh, config.num_eval_images)
  eval_dir = os.path.join(workdir, 'eval')
  writer = metric_writers.create_default_writer(eval_dir, just_logging=jax.process_index() > 0)
  summary = write_eval(writer, step, matrix, samples, config, info)
  writer.flush()
  if jax.process_index() == 0:
    with open(os.path.join(eval_dir, f'{step}.json'), 'w') as file:
      json.dump({'step': step, 'split': config.eval_split, **summary}, file, indent=2)
  return summary


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the state."""
  info, builder, mesh = prepare(config)
  os.makedirs(workdir, exist_ok=True)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as file:
      file.write(config.to_json_best_effort(indent=2))

  model = create_model(config.model)
  manager = checkpointing.create_manager(workdir, config.max_checkpoints_to_keep)
  state, start_step = checkpointing.restore_latest(
      manager, abstract_train_state(config, model, mesh))
  if start_step == 0:
    state = create_train_state(config, model, mesh, config.seed)
    if config.init_from:
      state, _ = pretrained.initialize_from(state, config.init_from, mesh)
  if start_step >= config.num_train_steps:
    logging.info('Checkpoint step %d already reaches num_train_steps=%d: nothing to train.',
                 start_step, config.num_train_steps)
    return state
  num_params = count_params(state.params)
  logging.info('%s on %s: %d parameters; training steps %d..%d', config.model.architecture,
               config.model.backbone, num_params, start_step + 1, config.num_train_steps)

  # Each restart reads a fresh random stream rather than replaying the one already seen.
  data_seed = int(np.random.SeedSequence([config.seed, start_step]).generate_state(1)[0])
  train_iter = input_pipeline.as_numpy(
      input_pipeline.create_train_dataset(config, info, builder, seed=data_seed))
  eval_ds, num_eval_batches = input_pipeline.create_eval_dataset(config, info, builder)
  logging.info('Evaluation: %d batches of %d on split %r', num_eval_batches,
               config.eval_batch_size, config.eval_split)

  batch = sharding.shard_batch(next(train_iter), mesh)
  compile_start = time.perf_counter()
  train_step = jit_train_step(make_train_step(config), mesh).lower(state, batch).compile()
  logging.info('Compiled the train step in %.1f s', time.perf_counter() - compile_start)
  eval_step = create_eval_step(config, model, info, mesh)

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
      is_last = step == config.num_train_steps

      if step % config.log_every_steps == 0 or is_last:
        averages = jax.tree.map(lambda *x: float(np.mean(x)), *jax.device_get(train_metrics))
        writer.write_scalars(step, {f'train/{key}': value for key, value in averages.items()})
        train_metrics = []

      if step % config.eval_every_steps == 0 or is_last:
        with report_progress.timed('eval'):
          variables = {'params': state.params, 'batch_stats': state.batch_stats}
          matrix, samples = evaluate.evaluate(eval_step, variables,
                                              input_pipeline.as_numpy(eval_ds), mesh,
                                              config.num_eval_images)
          write_eval(writer, step, matrix, samples, config, info)

      stopping = stop_request(step)
      if step % config.checkpoint_every_steps == 0 or is_last or stopping:
        with report_progress.timed('checkpoint'):
          checkpointing.save(manager, step, state)
      if stopping:
        logging.warning('Stopped at step %d; run again with the same workdir to resume.', step)
        break
  finally:
    stop_request.restore_handlers()
    manager.wait_until_finished()
    writer.flush()
  return state
