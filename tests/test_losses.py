"""The losses against numpy references written from their formulas, and against torch:
cross-entropy over non-ignored pixels, class weights, top-k and OHEM hard-pixel mining."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax import defaults
from deeplab_jax import losses
from deeplab_jax.config_error import ConfigError
from deeplab_jax.losses import softmax_cross_entropy


def numpy_log_softmax(logits):
  """log softmax over the last axis, in float64."""
  z = logits.astype(np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def numpy_cross_entropy(logits, labels, ignore):
  total, count = 0.0, 0
  for index in np.ndindex(labels.shape):
    if labels[index] == ignore:
      continue
    total -= numpy_log_softmax(logits[index])[labels[index]]
    count += 1
  return total / count


def test_matches_numpy_with_ignored_pixels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7, 4)).astype(np.float32) * 3
  labels = rng.integers(0, 4, size=(2, 5, 7))
  labels[rng.random(labels.shape) < 0.3] = 255
  got = softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 255)
  np.testing.assert_allclose(got, numpy_cross_entropy(logits, labels, 255), rtol=1e-5)


def test_ignored_pixels_do_not_matter():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
  labels = np.full((1, 4, 4), 255)
  labels[0, :2] = 1
  changed = logits.copy()
  changed[0, 2:] += 100 * rng.normal(size=(2, 4, 3))
  a = softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  b = softmax_cross_entropy(jnp.asarray(changed), jnp.asarray(labels))
  np.testing.assert_allclose(a, b, rtol=1e-6)


def test_all_ignored_gives_zero_and_bfloat16_logits_are_upcast():
  logits = jnp.ones((1, 3, 3, 2), jnp.bfloat16)
  assert softmax_cross_entropy(logits, jnp.full((1, 3, 3), 255)) == 0
  loss = softmax_cross_entropy(logits, jnp.zeros((1, 3, 3), jnp.int32))
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, np.log(2), rtol=1e-6)


@pytest.mark.parametrize('loss', [softmax_cross_entropy, losses.soft_jaccard_loss])
def test_size_mismatch_is_an_error(loss):
  with pytest.raises(ValueError, match=r'logits \(1, 4, 4, 2\) and labels \(1, 8, 8\)'):
    loss(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 8, 8), jnp.int32))


# Class weights and hard-pixel mining, against numpy written from the formulas (and torch).

def numpy_pixel_losses(logits, labels, ignore, class_weights=None):
  """(cross-entropy, weight) per pixel, flat, in float64; unlabelled pixels weigh 0."""
  log_softmax = numpy_log_softmax(logits).reshape(-1, logits.shape[-1])
  flat = labels.reshape(-1)
  valid = flat != ignore
  safe = np.where(valid, flat, 0)
  losses = -log_softmax[np.arange(flat.size), safe]
  weights = valid * (1.0 if class_weights is None else np.asarray(class_weights)[safe])
  return losses, weights


def random_case(seed, shape=(2, 6, 5), num_classes=4, ignored=0.25):
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=(*shape, num_classes)) * 2).astype(np.float32)
  labels = rng.integers(0, num_classes, size=shape)
  labels[rng.random(shape) < ignored] = 255
  return logits, labels


def test_class_weighted_loss_matches_torch_cross_entropy():
  torch = pytest.importorskip('torch')
  logits, labels = random_case(2)
  weights = (0.5, 2.0, 0.0, 3.25)
  expected = torch.nn.functional.cross_entropy(
      torch.tensor(logits).permute(0, 3, 1, 2).double(), torch.tensor(labels),
      weight=torch.tensor(weights).double(), ignore_index=255)
  got = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 255, weights)
  np.testing.assert_allclose(got, expected.item(), rtol=1e-5)


@pytest.mark.parametrize('fraction', [0.1, 0.37, 1.0])
@pytest.mark.parametrize('class_weights', [None, (1.0, 4.0, 0.5, 2.0)])
def test_top_k_is_the_weighted_mean_over_the_hardest_labelled_pixels(fraction, class_weights):
  logits, labels = random_case(3)
  pixel, weight = numpy_pixel_losses(logits, labels, 255, class_weights)
  labelled = np.flatnonzero(weight > 0)
  keep = max(int(np.floor(fraction * labelled.size)), 1)
  hardest = labelled[np.argsort(-(weight * pixel)[labelled], kind='stable')[:keep]]
  expected = np.sum(weight[hardest] * pixel[hardest]) / np.sum(weight[hardest])
  got = losses.top_k_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), fraction, 255,
                                   class_weights)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  if fraction == 1.0:
    np.testing.assert_allclose(got, losses.softmax_cross_entropy(
        jnp.asarray(logits), jnp.asarray(labels), 255, class_weights), rtol=1e-6)


def test_top_k_fraction_ramps_in_as_tf_deeplab():
  # TF DeepLab: ratio = min(step / mining_step, 1); fraction = ratio * top_k + (1 - ratio).
  for step, expected in ((0, 1.0), (50, 0.6), (100, 0.2), (400, 0.2)):
    np.testing.assert_allclose(losses.top_k_fraction(jnp.asarray(step), 0.2, 100), expected,
                               rtol=1e-6)
  np.testing.assert_allclose(losses.top_k_fraction(jnp.asarray(0), 0.2, 0), 0.2)


@pytest.mark.parametrize('threshold,min_kept', [(0.7, 3), (0.7, 0), (0.2, 20), (1.0, 1)])
@pytest.mark.parametrize('class_weights', [None, (1.0, 4.0, 0.5, 2.0)])
def test_ohem_keeps_the_unconfident_pixels_and_at_least_min_kept(threshold, min_kept,
                                                                 class_weights):
  logits, labels = random_case(4)
  pixel, weight = numpy_pixel_losses(logits, labels, 255, class_weights)
  probability = np.exp(-pixel)
  labelled = labels.reshape(-1) != 255
  # mmsegmentation's OHEMPixelSampler: the (min_kept * batch)-th smallest probability of the
  # labelled pixels raises the threshold; the pixels below it are kept.
  ascending = np.sort(probability[labelled])
  raised = max(ascending[min(min_kept * labels.shape[0], ascending.size - 1)], threshold)
  kept = labelled & (probability < raised)
  assert kept.sum() >= min(min_kept * labels.shape[0], labelled.sum() - 1)
  expected = np.sum((weight * pixel)[kept]) / np.sum(weight[kept])
  got = losses.ohem_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), threshold,
                                  min_kept, 255, class_weights)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_mining_without_labelled_pixels_gives_zero():
  logits = jnp.ones((1, 3, 3, 2))
  labels = jnp.full((1, 3, 3), 255)
  assert losses.top_k_cross_entropy(logits, labels, 0.5) == 0
  assert losses.ohem_cross_entropy(logits, labels, 0.7, 2) == 0


@pytest.mark.parametrize('loss_name', ['top_k', 'ohem', 'jaccard'])
def test_hard_pixels_and_jaccard_are_over_the_global_batch_when_sharded(loss_name):
  logits, labels = random_case(5, shape=(4, 8, 6))
  weights = (1.0, 2.0, 0.5, 3.0)
  if loss_name == 'top_k':
    loss = lambda z, y: losses.top_k_cross_entropy(z, y, 0.25, 255, weights)
  elif loss_name == 'ohem':
    loss = lambda z, y: losses.ohem_cross_entropy(z, y, 0.3, 10, 255, weights)
  else:
    loss = lambda z, y: losses.soft_jaccard_loss(z, y, 255)
  mesh = jax.sharding.Mesh(jax.devices(), ('data',))
  batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  assert len(jax.devices()) == 4
  sharded = jax.jit(loss, in_shardings=(batch, batch))(logits, labels)
  whole = loss(jnp.asarray(logits), jnp.asarray(labels))  # The reference: one global batch.
  per_device = np.mean([loss(jnp.asarray(logits[i:i + 1]), jnp.asarray(labels[i:i + 1]))
                        for i in range(4)])
  np.testing.assert_allclose(sharded, whole, rtol=1e-6)
  assert abs(float(sharded) - per_device) > 1e-3  # Not a mean of per-device selections.


@pytest.mark.parametrize('key,value', [('top_k_percent_pixels', 0.0),
                                       ('top_k_percent_pixels', 1.5),
                                       ('hard_example_mining_step', -1),
                                       ('ohem_threshold', 1.5),
                                       ('ohem_min_kept', -3),
                                       ('jaccard_loss_weight', -0.5)])
def test_bad_loss_settings_are_config_errors(key, value):
  config = defaults.get_config()
  if key.startswith('ohem'):
    config.ohem_threshold = 0.7
  config[key] = value
  with pytest.raises(ConfigError, match=f'config.{key}='):
    losses.create_loss(config, None)


def test_top_k_and_ohem_exclude_each_other():
  config = defaults.get_config()
  config.top_k_percent_pixels, config.ohem_threshold = 0.2, 0.7
  with pytest.raises(ConfigError, match='exclude each other'):
    losses.create_loss(config, None)


# The soft Jaccard loss, against numpy written from its formula.

def numpy_soft_jaccard(logits, labels, ignore):
  """Mean over the classes present of 1 - sum(p y) / sum(p + y - p y), labelled pixels only."""
  p = np.exp(numpy_log_softmax(logits)).reshape(-1, logits.shape[-1])
  flat = labels.reshape(-1)
  labelled = flat != ignore
  per_class = []
  for c in range(logits.shape[-1]):
    y = (flat == c)[labelled]
    if y.any():
      pc = p[labelled, c]
      per_class.append(1 - np.sum(pc * y) / np.sum(pc + y - pc * y))
  return np.mean(per_class)


def test_soft_jaccard_matches_numpy_over_present_classes_and_labelled_pixels():
  logits, labels = random_case(6, num_classes=5)
  labels[labels == 3] = 0  # Class 3 absent: it does not count.
  expected = numpy_soft_jaccard(logits, labels, 255)
  got = losses.soft_jaccard_loss(jnp.asarray(logits), jnp.asarray(labels), 255)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  ignored = labels == 255
  moved = np.where(ignored[..., None], -logits, logits)  # Unlabelled pixels do not matter.
  np.testing.assert_allclose(
      losses.soft_jaccard_loss(jnp.asarray(moved), jnp.asarray(labels), 255), got, rtol=1e-6)


def test_soft_jaccard_by_hand_and_its_gradient_by_finite_differences():
  # Two pixels of class 0, p = (0.5, 0.5) and (1, 0): IoU(0) = 1.5 / 2, IoU of absent 1 unused.
  logits = np.array([[[[0.0, 0.0], [40.0, 0.0]]]], np.float32)
  labels = np.zeros((1, 1, 2), np.int32)
  np.testing.assert_allclose(
      losses.soft_jaccard_loss(jnp.asarray(logits), jnp.asarray(labels)), 0.25, atol=1e-6)
  logits, labels = random_case(7, shape=(1, 3, 4), num_classes=3)
  grad = jax.grad(losses.soft_jaccard_loss)(jnp.asarray(logits), jnp.asarray(labels), 255)
  step = 1e-4
  for index in [(0, 0, 0, 0), (0, 1, 2, 1), (0, 2, 3, 2), (0, 2, 1, 0)]:
    up, down = logits.astype(np.float64), logits.astype(np.float64)
    up[index] += step
    down[index] -= step
    numeric = (numpy_soft_jaccard(up, labels, 255) - numpy_soft_jaccard(down, labels, 255))
    np.testing.assert_allclose(grad[index], numeric / (2 * step), atol=1e-5)


def test_the_loss_adds_the_weighted_soft_jaccard_to_the_cross_entropy():
  logits, labels = random_case(8)
  class_weights = (1.0, 4.0, 0.5, 2.0)
  config = defaults.get_config()
  config.jaccard_loss_weight = 0.75
  pixel, weight = numpy_pixel_losses(logits, labels, 255, class_weights)
  expected = (np.sum(weight * pixel) / np.sum(weight)
              + 0.75 * numpy_soft_jaccard(logits, labels, 255))
  got = losses.create_loss(config, class_weights)(jnp.asarray(logits), jnp.asarray(labels), 0)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
