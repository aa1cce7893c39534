"""Cross-entropy over non-ignored pixels against a numpy reference."""

import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax.losses import softmax_cross_entropy


def numpy_cross_entropy(logits, labels, ignore):
  total, count = 0.0, 0
  for index in np.ndindex(labels.shape):
    if labels[index] == ignore:
      continue
    z = logits[index].astype(np.float64)
    log_softmax = z - z.max() - np.log(np.exp(z - z.max()).sum())
    total -= log_softmax[labels[index]]
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


def test_size_mismatch_is_an_error():
  with pytest.raises(ValueError, match='differ in size'):
    softmax_cross_entropy(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 8, 8), jnp.int32))
