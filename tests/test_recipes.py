"""The papers' recipes freeze and multiply the parameter groups their papers do, and the CamVid
recipe builds its model and optimizer."""

import jax
import pytest

from conftest import load_config
from deeplab_jax import models
from deeplab_jax import schedules
from deeplab_jax import sharding
from deeplab_jax import train_state

def multipliers(recipe: str) -> dict[str, float]:
  """Each parameter path of the recipe's model -> its learning rate multiplier."""
  config = load_config(recipe)
  model = models.create_model(config.model)
  state = train_state.abstract_train_state(config, model, sharding.create_mesh())
  flat = jax.tree_util.tree_flatten_with_path(
      train_state.parameter_multipliers(state.params, config.learning_rate_multipliers))[0]
  return {'/'.join(key.key for key in path): value for path, value in flat}


def test_camvid_builds_its_model_and_optimizer():
  config = load_config('camvid')
  assert config.class_weights == 'median_frequency'
  assert set(multipliers('camvid').values()) == {1.0}


def test_deeplab_v1_steps_its_rate_and_multiplies_the_classifier():
  config = load_config('voc_v1_vgg16')
  schedule = schedules.create_learning_rate_schedule(config)
  assert [float(schedule(step)) for step in (1999, 2000)] == pytest.approx([1e-3, 1e-4])
  for name, value in multipliers('voc_v1_vgg16').items():
    assert value == (10.0 if name.startswith('classifier/') else 1.0), name


def test_deeplab_v2_freezes_batch_norm_and_multiplies_the_classifier():
  config = load_config('voc_v2_resnet101')
  assert config.model.freeze_batch_norm and config.lr_schedule == 'poly'
  for name, value in multipliers('voc_v2_resnet101').items():
    expected = 0.0 if '/bn/' in name else 10.0 if name.startswith('classifier/') else 1.0
    assert value == expected, name
