"""Confusion matrix and IoU against numpy references and hand-built cases."""

import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax.metrics import confusion_matrix, iou_from_confusion, pixel_accuracy


def test_confusion_matrix_matches_numpy_with_ignore():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, size=(3, 17, 11))
  labels[rng.random(labels.shape) < 0.2] = 255
  predictions = rng.integers(0, 5, size=labels.shape)
  want = np.zeros((5, 5), np.int64)
  for truth, guess in zip(labels.ravel(), predictions.ravel()):
    if truth != 255:
      want[truth, guess] += 1
  got = jax.jit(confusion_matrix, static_argnums=(2, 3))(
      jnp.asarray(labels), jnp.asarray(predictions), 5, 255)
  np.testing.assert_array_equal(got, want)
  assert got.dtype == jnp.int32


def test_iou_by_hand():
  # Ground truth rows, predictions columns; class 2 never appears anywhere.
  matrix = np.array([[3, 1, 0],
                     [2, 4, 0],
                     [0, 0, 0]])
  per_class, mean = iou_from_confusion(matrix)
  np.testing.assert_allclose(per_class[:2], [3 / (4 + 5 - 3), 4 / (6 + 5 - 4)])
  assert np.isnan(per_class[2])
  np.testing.assert_allclose(mean, (3 / 6 + 4 / 7) / 2)
  np.testing.assert_allclose(pixel_accuracy(matrix), 7 / 10)


def test_class_only_predicted_counts_with_zero_iou():
  matrix = np.array([[5, 1], [0, 0]])  # Class 1 is predicted once but never true.
  per_class, mean = iou_from_confusion(matrix)
  np.testing.assert_allclose(per_class, [5 / 6, 0.0])
  np.testing.assert_allclose(mean, 5 / 12)
