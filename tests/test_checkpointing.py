"""Serving restores model variables alone: from a train checkpoint whatever its optimizer, onto
the current mesh, with errors that name the workdir or the step."""

import os

import jax
import numpy as np
import optax
import pytest

from conftest import tiny_shapes_config
from deeplab_jax import checkpointing
from deeplab_jax import sharding
from deeplab_jax.models import create_model
from deeplab_jax.train_state import TrainState


def test_serving_restores_variables_from_any_train_state(tmp_path):
  # A train state with Adam's optimizer state, which our SGD does not have: serving reads the
  # model variables only, so it restores them all the same.
  config = tiny_shapes_config(str(tmp_path))
  model = create_model(config.model)
  variables = jax.jit(lambda x: model.init(jax.random.key(3), x, train=False))(
      np.zeros((1, 33, 33, 3), np.uint8))
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


def test_a_workdir_without_checkpoints_is_named_and_left_alone(tmp_path):
  config = tiny_shapes_config(str(tmp_path))
  workdir = tmp_path / 'typo'
  with pytest.raises(ValueError, match=f'{workdir} holds no checkpoint'):
    checkpointing.restore_model(config, str(workdir), sharding.create_mesh())
  assert not os.path.exists(workdir)
