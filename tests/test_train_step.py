"""The jitted, sharded train step: 4 devices equal 1 device, bf16, one compilation, decay mask,
frozen BatchNorm, learning rate multipliers, AdamW and the moving average of the variables."""

from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from deeplab_jax import defaults
from deeplab_jax import sharding
from deeplab_jax import train_state
from deeplab_jax.config_error import ConfigError
from deeplab_jax.models import create_model


def tiny_config(dtype='float32'):
  config = defaults.get_config()
  config.crop_size = (33, 41)
  config.batch_size = 8
  config.num_train_steps, config.learning_rate, config.warmup_steps = 100, 0.05, 0
  config.model.backbone, config.model.multi_grid, config.model.width = 'resnet18', (1, 2), 0.125
  config.model.aspp_features = config.model.decoder_features = 16
  config.model.low_level_features = 8
  config.model.atrous_rates = (1, 2, 3)
  config.model.num_classes = 5
  config.model.dropout_rate = 0.0
  config.model.dtype = dtype
  return config


def random_batch(config, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, config.model.num_classes, (config.batch_size, *config.crop_size))
  labels[rng.random(labels.shape) < 0.2] = config.ignore_label
  return {'image': rng.integers(0, 256, (config.batch_size, *config.crop_size, 3), np.uint8),
          'label': labels.astype(np.int32)}


def run_steps(config, devices, num_steps=2):
  mesh = sharding.create_mesh(devices)
  model = create_model(config.model)
  state = train_state.create_train_state(config, model, mesh, seed=0)
  step = train_state.jit_train_step(train_state.make_train_step(config, model), mesh)
  for index in range(num_steps):
    batch = sharding.shard_batch(random_batch(config, index), mesh)
    assert batch['image'].sharding.spec == P('data')
    state, metrics = step(state, batch)
  assert jax.tree.leaves(state.params)[0].sharding.is_fully_replicated
  return jax.device_get((state, metrics))


def test_four_devices_equal_one_device():
  assert len(jax.devices()) == 4
  config = tiny_config()
  state_1, metrics_1 = run_steps(config, jax.devices()[:1])
  state_4, metrics_4 = run_steps(config, jax.devices())
  np.testing.assert_allclose(metrics_4['loss'], metrics_1['loss'], rtol=1e-5)
  # BatchNorm statistics are those of the global batch, not of each device's quarter of it.
  for name in ('params', 'batch_stats', 'opt_state'):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 getattr(state_4, name), getattr(state_1, name))
  assert int(state_4.step) == 2


def test_bfloat16_compute_float32_state():
  state_32, metrics_32 = run_steps(tiny_config('float32'), jax.devices(), num_steps=1)
  state_16, metrics_16 = run_steps(tiny_config('bfloat16'), jax.devices(), num_steps=1)
  for tree in (state_16.params, state_16.batch_stats, state_16.opt_state):
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(tree)
               if np.issubdtype(leaf.dtype, np.floating))
  assert metrics_16['loss'].dtype == np.float32
  np.testing.assert_allclose(metrics_16['loss'], metrics_32['loss'], rtol=0.05)


def test_train_step_compiles_once():
  config = tiny_config()
  traces = []
  model = create_model(config.model)
  step_fn = train_state.make_train_step(config, model)

  def counted(state, batch):
    traces.append(1)
    return step_fn(state, batch)

  mesh = sharding.create_mesh()
  state = train_state.create_train_state(config, model, mesh, seed=0)
  step = train_state.jit_train_step(counted, mesh)
  for index in range(3):
    state, _ = step(state, sharding.shard_batch(random_batch(config, index), mesh))
  assert len(traces) == 1


def test_moving_average_follows_each_step_and_leaves_training_alone():
  """With ema_decay, after the step at 0-based step t the average is r * average + (1 - r) *
  variables, r = min(decay, t / (t + 10)), computed here in numpy from each step's variables;
  the parameters and statistics are those of training without it."""
  mesh = sharding.create_mesh()
  states = {}
  for decay in (0.0, 0.2):  # 0.2: the cap decides from t = 3 on (3 / 13 > 0.2).
    config = tiny_config()
    config.ema_decay = decay
    model = create_model(config.model)
    state = train_state.create_train_state(config, model, mesh, seed=0)
    step = train_state.jit_train_step(train_state.make_train_step(config, model), mesh)
    expected = None
    for t in range(5):
      state, _ = step(state, sharding.shard_batch(random_batch(config, t), mesh))
      variables = jax.device_get(state.variables)
      rate = min(decay, t / (t + 10))
      expected = variables if expected is None else jax.tree.map(
          lambda average, value: rate * average + (1 - rate) * value, expected, variables)
    states[decay] = jax.device_get(state)
  assert states[0.0].ema == {} and states[0.0].eval_variables == states[0.0].variables
  jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7),
               states[0.2].ema, expected)
  assert states[0.2].eval_variables is states[0.2].ema
  assert not any(np.array_equal(average, value) for average, value in zip(
      jax.tree.leaves(states[0.2].ema['params']), jax.tree.leaves(states[0.2].params)))
  jax.tree.map(np.testing.assert_array_equal, states[0.2].variables, states[0.0].variables)


def test_weight_decay_only_on_kernels():
  config = tiny_config()
  config.weight_decay, config.momentum = 0.5, 0.0
  params = {'conv': {'kernel': jnp.ones((3, 3)), 'bias': jnp.ones(3)},
            'bn': {'scale': jnp.ones(3), 'bias': jnp.ones(3)}}
  tx = train_state.create_optimizer(config)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  lr = config.learning_rate * (1 - 0 / config.num_train_steps)
  np.testing.assert_allclose(updates['conv']['kernel'], -lr * 0.5 * np.ones((3, 3)), rtol=1e-6)
  for leaf in (updates['conv']['bias'], updates['bn']['scale'], updates['bn']['bias']):
    np.testing.assert_array_equal(leaf, 0)


def test_frozen_batch_norm_and_parameters_stay_bit_identical():
  """After steps: the statistics, the BatchNorm scales and offsets, and a conv kernel that
  weight decay would shrink are as initialised; every other parameter moved."""
  config = tiny_config()
  config.model.freeze_batch_norm = True
  config.learning_rate_multipliers = (('/bn/', 0.0), ('backbone/stem_conv', 0.0),
                                      ('classifier', 10.0))
  config.weight_decay = 0.01
  mesh = sharding.create_mesh()
  model = create_model(config.model)
  state = train_state.create_train_state(config, model, mesh, seed=0)
  initial = jax.device_get(state.variables)
  step = train_state.jit_train_step(train_state.make_train_step(config, model), mesh)
  for index in range(2):
    state, _ = step(state, sharding.shard_batch(random_batch(config, index), mesh))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.batch_stats),
               initial['batch_stats'])
  before = traverse_util.flatten_dict(initial['params'], sep='/')
  after = traverse_util.flatten_dict(jax.device_get(state.params), sep='/')
  assert any('/bn/' in name for name in before)
  for name, value in after.items():
    if '/bn/' in name or name.startswith('backbone/stem_conv'):
      np.testing.assert_array_equal(value, before[name], err_msg=name)
    else:
      assert not np.array_equal(value, before[name]), name


def test_learning_rate_multipliers_scale_the_step_and_the_decay():
  """SGD's first step is -lr * m * (g + decay * w) for kernels, -lr * m * g for the others, on
  the tiny model's real parameter tree; the first matching regex decides."""
  config = tiny_config()
  config.weight_decay, config.momentum = 0.01, 0.9
  config.learning_rate_multipliers = (('classifier/bias', 20.0), ('classifier', 10.0),
                                      ('/bn/', 0.0), ('aspp', 0.5))
  model = create_model(config.model)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                          jnp.zeros((1, 33, 41, 3)))['params']
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), shapes)
  grads = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), shapes)
  tx = train_state.create_optimizer(config)
  updates, _ = tx.update(grads, tx.init(params), params)

  def expected(path, weight, grad):
    name = '/'.join(key.key for key in path)
    multiplier = (20.0 if 'classifier/bias' in name else 10.0 if 'classifier' in name else
                  0.0 if '/bn/' in name else 0.5 if 'aspp' in name else 1.0)
    decay = config.weight_decay * weight if path[-1].key == 'kernel' else 0
    return -config.learning_rate * multiplier * (grad + decay)

  jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8),
               updates, jax.tree_util.tree_map_with_path(expected, params, grads))


def test_adamw_matches_adam_written_out_in_numpy():
  """Two AdamW steps against numpy: bias-corrected moments with b1 = momentum, plus the decay
  on kernels only, times the scheduled rate; the multipliers scale both, and 0 freezes."""
  config = tiny_config()
  config.optimizer, config.weight_decay, config.momentum = 'adamw', 0.05, 0.8
  config.learning_rate = 1e-3
  config.learning_rate_multipliers = (('classifier', 10.0), ('/bn/', 0.0))
  rng = np.random.default_rng(0)
  shapes = {'classifier/kernel': (3, 4), 'classifier/bias': (4,), 'stage/conv/kernel': (2, 2),
            'stage/bn/scale': (2,)}
  want = {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
  params = traverse_util.unflatten_dict(want, sep='/')
  tx = train_state.create_optimizer(config)
  opt_state = tx.init(params)
  first = {name: 0.0 for name in shapes}
  second = {name: 0.0 for name in shapes}
  for step in range(2):
    grads = {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
    updates, opt_state = tx.update(traverse_util.unflatten_dict(grads, sep='/'), opt_state,
                                   params)
    params = jax.tree.map(lambda w, u: w + u, params, updates)
    rate = config.learning_rate * (1 - step / config.num_train_steps) ** config.lr_power
    for name, grad in grads.items():
      multiplier = 10.0 if 'classifier' in name else 0.0 if '/bn/' in name else 1.0
      first[name] = 0.8 * first[name] + 0.2 * grad
      second[name] = 0.999 * second[name] + 0.001 * grad**2
      adam = (first[name] / (1 - 0.8**(step + 1))) / (
          np.sqrt(second[name] / (1 - 0.999**(step + 1))) + 1e-8)
      decay = 0.05 * want[name] if name.endswith('kernel') else 0.0
      want[name] = want[name] - multiplier * rate * (adam + decay)
  got = traverse_util.flatten_dict(jax.device_get(params), sep='/')
  for name in shapes:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_an_unknown_optimizer_is_a_config_error():
  config = tiny_config()
  config.optimizer = 'adam'
  with pytest.raises(ConfigError, match="unknown; expected one of \\('sgd', 'adamw'\\)"):
    train_state.create_optimizer(config)


def test_a_multiplier_that_matches_no_parameter_is_a_config_error():
  config = tiny_config()
  config.learning_rate_multipliers = (('clasifier', 10.0),)
  with pytest.raises(ConfigError, match="'clasifier' matches no parameter path"):
    train_state.abstract_train_state(config, create_model(config.model), sharding.create_mesh())
