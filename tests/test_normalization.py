"""Raw pixels in: padding filled with the mean pixel on the device, each backbone's own
normalisation as the model's first operation, and the train step seeing exactly that."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from deeplab_jax import defaults
from deeplab_jax import sharding
from deeplab_jax import train_state
from deeplab_jax.models import create_model
from deeplab_jax.models.normalization import (IMAGENET, SYMMETRIC, Normalization,
                                              boxes_from_sizes, fill_padding)

MEAN = (10.0, 20.0, 30.0)


def test_fill_padding_puts_the_mean_pixel_outside_each_box():
  pixels = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3)).astype(np.uint8)
  boxes = np.array([[0, 0, 5, 6],  # The whole frame.
                    [0, 0, 3, 4],  # Top left, as evaluation pads.
                    [0, 2, 5, 6],  # Right-aligned: a crop flipped after padding.
                    [0, 0, 0, 0]])  # A padding example.
  want = np.empty((4, 5, 6, 3), np.float32)
  for index, (top, left, bottom, right) in enumerate(boxes):
    for row in range(5):
      for col in range(6):
        inside = top <= row < bottom and left <= col < right
        want[index, row, col] = pixels[index, row, col] if inside else MEAN
  np.testing.assert_array_equal(fill_padding(pixels, boxes, MEAN), want)
  np.testing.assert_array_equal(boxes_from_sizes(np.array([[3, 4], [0, 0]])),
                                [[0, 0, 3, 4], [0, 0, 0, 0]])


def tiny_model_config(backbone='resnet18'):
  config = defaults.get_config().model
  config.backbone, config.width = backbone, 0.125
  config.multi_grid = (1, 2) if backbone.startswith('resnet18') else (1, 2, 4)
  config.aspp_features = config.decoder_features = 16
  config.low_level_features, config.num_classes = 8, 3
  return config


def test_each_backbone_has_its_normalisation_and_configs_can_override_it():
  assert create_model(tiny_model_config('resnet50')).normalization == IMAGENET
  assert create_model(tiny_model_config('mobilenetv2')).normalization == IMAGENET
  assert create_model(tiny_model_config('resnet50_beta')).normalization == SYMMETRIC
  assert create_model(tiny_model_config('xception65')).normalization == SYMMETRIC
  config = tiny_model_config()
  config.mean_rgb, config.std_rgb = MEAN, (2.0, 3.0, 4.0)
  assert create_model(config).normalization == Normalization(MEAN, (2.0, 3.0, 4.0))
  config.std_rgb = (1.0, 0.0, 1.0)
  with pytest.raises(ValueError, match=r'model.std_rgb=\(1.0, 0.0, 1.0\)'):
    create_model(config)
  # The recipes: shapes keeps the [-1, 1] scaling it was trained with; the others take their
  # backbone's, which their pretrained weights expect.
  assert create_model(load_config('shapes').model).normalization == SYMMETRIC
  assert create_model(load_config('voc').model).normalization == IMAGENET
  assert create_model(load_config('voc_xception65').model).normalization == SYMMETRIC


def test_the_model_normalises_raw_pixels_first():
  config = tiny_model_config()
  config.mean_rgb, config.std_rgb = MEAN, (2.0, 3.0, 4.0)
  model = create_model(config)
  config.mean_rgb, config.std_rgb = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
  identity = create_model(config)
  pixels = np.random.default_rng(1).integers(0, 256, (2, 33, 41, 3)).astype(np.uint8)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(pixels)
  normalised = (pixels.astype(np.float32) - MEAN) / np.float32([2.0, 3.0, 4.0])
  apply = lambda m, x: jax.jit(lambda v, x: m.apply(v, x, train=False))(variables, x)
  # Logits reach about 15: float32 rounding of the two orders of operations allows 1e-4.
  np.testing.assert_allclose(apply(model, pixels), apply(identity, normalised),
                             rtol=1e-5, atol=1e-4)


def test_the_train_step_sees_the_mean_pixel_outside_the_box():
  # One batch with random values where the crops hold padding, one with the model's mean pixel
  # there: the same step.
  config = defaults.get_config()
  config.model = tiny_model_config()
  config.crop_size, config.batch_size, config.num_train_steps = (17, 21), 4, 10
  model = create_model(config.model)
  rng = np.random.default_rng(2)
  boxes = np.array([[0, 0, 17, 21], [0, 0, 10, 21], [0, 5, 17, 21], [0, 3, 12, 21]], np.int32)
  junk = rng.uniform(0, 255, (4, 17, 21, 3)).astype(np.float32)
  mean_padded = np.asarray(fill_padding(junk, boxes, model.normalization.mean_rgb))
  assert not np.array_equal(junk, mean_padded)
  labels = rng.integers(0, 3, (4, 17, 21)).astype(np.int32)
  mesh = sharding.create_mesh()
  step = train_state.jit_train_step(train_state.make_train_step(config, model), mesh)
  initial = train_state.create_train_state(config, model, mesh, seed=0)
  results = []
  for images, batch_boxes in ((junk, boxes), (mean_padded, np.tile([0, 0, 17, 21], (4, 1)))):
    state = jax.tree.map(jnp.copy, initial)  # The step donates the state it is given.
    batch = {'image': images, 'label': labels, 'box': batch_boxes.astype(np.int32)}
    results.append(jax.device_get(step(state, sharding.shard_batch(batch, mesh))))
  (state_a, metrics_a), (state_b, metrics_b) = results
  np.testing.assert_array_equal(metrics_a['loss'], metrics_b['loss'])
  jax.tree.map(np.testing.assert_array_equal, state_a.params, state_b.params)
