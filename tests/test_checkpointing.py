"""Serving restores model variables alone: from a train checkpoint whatever its optimizer, onto
the current mesh, with errors that name the workdir or the step."""

import logging
import os
import resource
import signal

import jax
import numpy as np
import optax
import pytest

from conftest import tiny_shapes_config
from deeplab_jax import checkpointing
from deeplab_jax import sharding
from deeplab_jax import train
from deeplab_jax.models import create_model
from deeplab_jax.train_state import TrainState


def initial_variables(model, seed):
  """The model's variables as initialised for 33x33 images."""
  return jax.jit(lambda x: model.init(jax.random.key(seed), x, train=False))(
      np.zeros((1, 33, 33, 3), np.uint8))


def test_serving_restores_variables_from_any_train_state(tmp_path):
  # A train state with Adam's optimizer state, which our SGD does not have: serving reads the
  # model variables only, so it restores them all the same.
  config = tiny_shapes_config(str(tmp_path))
  model = create_model(config.model)
  variables = initial_variables(model, 3)
  variables = jax.tree.map(lambda x: x + np.random.default_rng(0).normal(size=x.shape), variables)
  state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                            batch_stats=variables['batch_stats'], tx=optax.adam(1e-3))
  manager = checkpointing.create_manager(str(tmp_path), 2)
  checkpointing.save(manager, 7, state)
  manager.wait_until_finished()

  mesh = sharding.create_mesh()
  _, restored, step = checkpointing.restore_model(config, str(tmp_path), mesh)
  assert step == 7
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), variables)
  assert all(leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
             for leaf in jax.tree.leaves(restored))

  config.eval.checkpoint_step = 8
  with pytest.raises(ValueError, match=r'No checkpoint of step 8 .* there are \[7\]'):
    checkpointing.restore_model(config, str(tmp_path), mesh)


def test_serving_restores_the_moving_average_where_the_config_keeps_one(tmp_path):
  config = tiny_shapes_config(str(tmp_path))
  model = create_model(config.model)
  variables = initial_variables(model, 3)
  average = jax.tree.map(lambda x: x + np.random.default_rng(1).normal(size=x.shape), variables)
  mesh = sharding.create_mesh()
  for workdir, ema in (tmp_path / 'with', average), (tmp_path / 'without', {}):
    state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                              batch_stats=variables['batch_stats'], ema=ema, tx=optax.sgd(0.1))
    manager = checkpointing.create_manager(str(workdir), 2)
    checkpointing.save(manager, 5, state)
    checkpointing.wait_until_saved(manager)

  for decay, want in (0.0, variables), (0.999, average):
    config.ema_decay = decay
    _, restored, _ = checkpointing.restore_model(config, str(tmp_path / 'with'), mesh)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(want))
  with pytest.raises(checkpointing.CheckpointMismatch,
                     match=r'step 5 .* holds no moving average .* --config.ema_decay=0'):
    checkpointing.restore_model(config, str(tmp_path / 'without'), mesh)


def test_a_model_config_other_than_training_s_is_named_in_a_warning(tmp_path, caplog):
  # Atrous rates change no variable's shape: the checkpoint restores into either model, so only
  # the run's config.json can tell that the rates differ.
  config = tiny_shapes_config(str(tmp_path))
  model = create_model(config.model)
  variables = initial_variables(model, 0)
  manager = checkpointing.create_manager(str(tmp_path), 2)
  checkpointing.save(manager, 3, {'params': variables['params'],
                                  'batch_stats': variables['batch_stats']})
  manager.wait_until_finished()
  train.write_config(config, str(tmp_path))
  mesh = sharding.create_mesh()
  with caplog.at_level(logging.WARNING, logger='absl'):
    checkpointing.restore_model(config, str(tmp_path), mesh)
  assert 'trained with other' not in caplog.text

  config.model.atrous_rates = tuple(2 * rate for rate in config.model.atrous_rates)
  config.eval.flip = not config.eval.flip
  with caplog.at_level(logging.WARNING, logger='absl'):
    checkpointing.restore_model(config, str(tmp_path), mesh)
  assert 'trained with other model.atrous_rates' in caplog.text
  assert 'eval.flip' not in caplog.text


def test_a_workdir_without_checkpoints_is_named_and_left_alone(tmp_path):
  config = tiny_shapes_config(str(tmp_path))
  workdir = tmp_path / 'typo'
  with pytest.raises(ValueError, match=f'{workdir} holds no checkpoint'):
    checkpointing.restore_model(config, str(workdir), sharding.create_mesh())
  assert not os.path.exists(workdir)


def test_a_save_that_cannot_write_fails_by_name_and_leaves_the_others_intact(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path), 3)
  state = {'w': np.arange(300_000, dtype=np.float32), 'b': np.ones(3, np.float32)}
  checkpointing.save(manager, 1, state)
  checkpointing.wait_until_saved(manager)
  # A disk that fills up: writes past 100 kB fail (EFBIG), as they would with ENOSPC.
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
  try:
    with pytest.raises(checkpointing.CheckpointError,
                       match=r'Saving a checkpoint in .* failed: .*File too large.* The complete '
                       r'checkpoints, steps \[1\], are untouched'):
      checkpointing.save(manager, 2, {'w': state['w'] * 2, 'b': state['b']})
      checkpointing.wait_until_saved(manager)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, handler)
  assert manager.all_steps() == [1]
  restored, step = checkpointing.restore_latest(manager, state)
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, restored, state)


def test_small_replicated_arrays_are_saved_whole_and_large_ones_split(tmp_path, caplog):
  # Orbax writes a replicated array as a slice from each replica, one compiled program per shape
  # and device: arrays whose slices would be under MIN_SLICE_BYTES are written whole instead.
  # Every array here has an axis that the 4 replicas divide, which is what Orbax splits along.
  mesh = sharding.create_mesh()
  large = np.arange(4 * 262_151, dtype=np.float32).reshape(4, 262_151)  # 1 MiB slices.
  assert large.nbytes // 4 >= checkpointing.MIN_SLICE_BYTES
  state = {'small': np.arange(68, dtype=np.float32), 'kernel': np.ones((3, 3, 12, 20), np.float32),
           'large': large}
  replicated = jax.device_put(state, sharding.replicated(mesh))
  manager = checkpointing.create_manager(str(tmp_path), 1)
  with jax.log_compiles(), caplog.at_level(logging.WARNING, logger='jax'):
    checkpointing.save(manager, 1, replicated)
    checkpointing.wait_until_saved(manager)
  sliced = {message.split('with global shapes and types (')[1].split(',)')[0]
            for message in caplog.messages if message.startswith('Compiling jit(slice)')}
  assert sliced == {'ShapedArray(float32[4,262151])'}
  restored, step = checkpointing.restore_latest(manager, replicated)
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), state)
