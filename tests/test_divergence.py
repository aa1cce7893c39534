"""A learning rate that explodes: training stops naming the step and the last good checkpoint, and
saves nothing after it; or, with `skip_nonfinite_steps`, skips the non-finite steps."""

import os

import jax
import numpy as np
import pytest

from conftest import tiny_shapes_config
from deeplab_jax import checkpointing
from deeplab_jax import train

# saved_params reads whatever a checkpoint holds, with no target, so Orbax reads the shardings
# from the checkpoint and says so.
pytestmark = pytest.mark.filterwarnings('ignore:Sharding info not provided when restoring')


def exploding_config(shapes_dir):
  """The tiny shapes run with a learning rate that makes step 2's loss non-finite."""
  config = tiny_shapes_config(shapes_dir)
  config.learning_rate = 1e38
  config.checkpoint_every_steps = 1
  config.eval_every_steps = 100  # Only at the last step.
  config.max_checkpoints_to_keep = 4
  return config


def saved_params(workdir, step):
  variables, _ = checkpointing.restore_variables(workdir, None, step)
  return variables['params']


def test_a_non_finite_loss_stops_training_and_saves_nothing_after_the_last_good_step(
    shapes_dir, tmp_path):
  workdir = str(tmp_path / 'work')
  with pytest.raises(train.TrainingDiverged) as error:
    train.train_and_evaluate(exploding_config(shapes_dir), workdir)
  message = str(error.value)
  assert 'diverged at step 2: loss nan' in message or 'diverged at step 2: loss inf' in message
  assert 'the last good checkpoint is step 1' in message
  assert 'config.skip_nonfinite_steps=True' in message
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['1']
  for leaf in jax.tree.leaves(saved_params(workdir, 1)):
    assert np.all(np.isfinite(leaf))


def test_skipping_leaves_the_state_as_the_last_finite_step_left_it(shapes_dir, tmp_path):
  config = exploding_config(shapes_dir)
  config.skip_nonfinite_steps = True
  workdir = str(tmp_path / 'work')
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 4
  after_step_1 = saved_params(workdir, 1)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), after_step_1)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(after_step_1))
