"""The train state and what moves it: model variables (and their moving average), SGD with
momentum (or AdamW) on the poly schedule, and the pure, jitted `train_step(state, batch) ->
(state, metrics)`. Imports no TensorFlow.

Serving needs none of this: it restores model variables alone (`checkpointing.restore_model`).
"""

from collections.abc import Callable, Sequence
import re
from typing import Any

from flax import struct
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import optax

from deeplab_jax import losses
from deeplab_jax import schedules
from deeplab_jax import sharding
from deeplab_jax.config_error import ConfigError
from deeplab_jax.models.normalization import fill_padding


class TrainState(train_state.TrainState):
  """Step, params, optimizer state, the BatchNorm running statistics and, with
  `config.ema_decay`, the moving average of those variables ({} without)."""
  batch_stats: Any
  ema: Any = struct.field(default_factory=dict)

  @property
  def variables(self) -> dict[str, Any]:
    """What the model is trained with: {'params': ..., 'batch_stats': ...}."""
    return {'params': self.params, 'batch_stats': self.batch_stats}

  @property
  def eval_variables(self) -> dict[str, Any]:
    """What the model is evaluated, served and exported with: the moving average where one
    is kept, else the variables."""
    return self.ema or self.variables


def ema_rate(decay: float, step: jax.Array) -> jax.Array:
  """The weight of the old average at (0-based) `step`: `decay`, but at most step / (step + 10),
  as TensorFlow's ExponentialMovingAverage with num_updates. The average starts at the first
  update, and early on weighs the last tenth or so of the steps taken, not the initial weights."""
  return jnp.minimum(decay, step / (step + 10.0))


OPTIMIZERS = ('sgd', 'adamw')


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`config.optimizer` on the schedule: 'sgd', SGD with momentum and weight decay added to the
  gradient, or 'adamw', Adam (b1 = momentum) with decoupled weight decay (Loshchilov & Hutter),
  scaled by the learning rate. Weight decay is on convolution kernels only; each parameter's
  learning rate and decay are times its `config.learning_rate_multipliers` entry."""
  if config.optimizer not in OPTIMIZERS:
    raise ConfigError('optimizer', config.optimizer, f'unknown; expected one of {OPTIMIZERS}',
                      'sgd')
  schedule = schedules.create_learning_rate_schedule(config)
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == 'kernel', params)

  def optimizer(multiplier: float) -> optax.GradientTransformation:
    if multiplier == 0:  # Frozen: no update, no decay, no momentum.
      return optax.set_to_zero()
    rate = schedule if multiplier == 1 else lambda step: multiplier * schedule(step)
    if config.optimizer == 'adamw':
      return optax.adamw(rate, b1=config.momentum, weight_decay=config.weight_decay,
                         mask=decay_mask)
    return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
                       optax.sgd(rate, momentum=config.momentum))

  if not config.learning_rate_multipliers:
    return optimizer(1.0)
  multipliers = {multiplier for _, multiplier in config.learning_rate_multipliers} | {1.0}
  return optax.multi_transform(
      {f'x{multiplier}': optimizer(multiplier) for multiplier in multipliers},
      lambda params: jax.tree.map(lambda m: f'x{m}', parameter_multipliers(
          params, config.learning_rate_multipliers)))


def parameter_multipliers(params, multipliers: Sequence[tuple[str, float]]):
  """The learning rate multiplier of each parameter: that of the first (regex, multiplier) whose
  regex its path ('aspp/conv1x1/conv/kernel') contains, else 1. A regex that matches no
  parameter, or a negative multiplier, is a ConfigError."""
  for pattern, multiplier in multipliers:
    if not multiplier >= 0:
      raise ConfigError('learning_rate_multipliers', multipliers,
                        f'the multiplier of {pattern!r} is {multiplier}; it must be at least 0')
  paths = {path: '/'.join(key.key for key in path)
           for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
  for pattern, _ in multipliers:
    if not any(re.search(pattern, name) for name in paths.values()):
      example = next(iter(paths.values()))
      raise ConfigError('learning_rate_multipliers', multipliers,
                        f'{pattern!r} matches no parameter path, e.g. {example!r}')
  return jax.tree_util.tree_map_with_path(
      lambda path, _: next((float(multiplier) for pattern, multiplier in multipliers
                            if re.search(pattern, paths[path])), 1.0), params)


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
  checkpoint is restored onto to resume training."""
  shapes = jax.eval_shape(_state_initializer(config, model, config.seed))
  replicated = sharding.replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      shapes)


def _state_initializer(config: ml_collections.ConfigDict, model, seed: int) -> Callable:
  """init() -> a fresh TrainState at step 0."""

  def init():
    rng = jax.random.key(seed, impl='rbg')
    variables = model.init(rng, jnp.zeros((1, *config.crop_size, 3), jnp.uint8), train=False)
    state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                              batch_stats=variables.get('batch_stats', {}),  # VGG has none.
                              tx=create_optimizer(config))
    return state.replace(step=jnp.zeros((), jnp.int32),
                         ema=state.variables if config.ema_decay else {})

  return init


def make_train_step(config: ml_collections.ConfigDict, model,
                    class_weights: Sequence[float] | None = None) -> Callable:
  """train_step(state, batch) -> (state, metrics): one SGD step on the global batch, with the
  loss `config` chooses (`losses.create_loss`).

  batch: raw 'image's, their 'label's and, where crops hold padding, each image's 'box'
  (see `input_pipeline`); the padding becomes the model's mean pixel. metrics['finite'] says
  whether the loss and the gradient were finite; with `config.skip_nonfinite_steps` a step
  where they were not leaves the parameters, optimizer state and statistics as they were.
  """
  schedule = schedules.create_learning_rate_schedule(config)
  pixel_loss = losses.create_loss(config, class_weights)

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    dropout_rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
    images = batch['image']
    if 'box' in batch:
      images = fill_padding(images, batch['box'], model.normalization.mean_rgb)

    def loss_fn(params):
      logits, updates = state.apply_fn(
          {'params': params, 'batch_stats': state.batch_stats}, images, train=True,
          mutable=['batch_stats', 'intermediates'], rngs={'dropout': dropout_rng})
      loss = pixel_loss(logits, batch['label'], state.step)
      if 'aux_logits' in updates.get('intermediates', {}):
        (aux_logits,) = updates['intermediates']['aux_logits']
        loss += config.aux_loss_weight * pixel_loss(aux_logits, batch['label'], state.step)
      return loss, updates.get('batch_stats', {})

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    metrics = {'loss': loss, 'learning_rate': schedule(state.step), 'grad_norm': grad_norm,
               'finite': finite}
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if config.ema_decay:
      rate = ema_rate(config.ema_decay, state.step)
      new_state = new_state.replace(ema=jax.tree.map(
          lambda average, value: rate * average + (1 - rate) * value, state.ema,
          new_state.variables))
    if config.skip_nonfinite_steps:  # Such a step only advances the step count.
      new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state,
                               state.replace(step=new_state.step))
    return new_state, metrics

  return train_step


def jit_train_step(train_step: Callable, mesh: jax.sharding.Mesh) -> Callable:
  """`train_step` under jit: state replicated and donated, batch split over the data axis."""
  replicated = sharding.replicated(mesh)
  return jax.jit(train_step, in_shardings=(replicated, sharding.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=0)
