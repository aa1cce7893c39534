"""Segmentation metrics from a confusion matrix: per-class IoU, mean IoU, pixel accuracy."""

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(labels: jax.Array, predictions: jax.Array, num_classes: int,
                     ignore_label: int = 255) -> jax.Array:
  """[C, C] int32 counts; rows are ground-truth classes, columns predictions.

  Pixels labelled `ignore_label` are not counted. Computed on device, so it can be summed over a
  whole validation split without bringing predictions back to the host.
  """
  labels = labels.reshape(-1).astype(jnp.int32)
  predictions = predictions.reshape(-1).astype(jnp.int32)
  cells = num_classes * num_classes
  index = jnp.where(labels == ignore_label, cells, labels * num_classes + predictions)
  counts = jnp.bincount(index, length=cells + 1)[:cells]
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def iou_from_confusion(matrix) -> tuple[np.ndarray, float]:
  """(per-class IoU, mean IoU). Classes absent from both ground truth and predictions have
  IoU NaN and are left out of the mean."""
  matrix = np.asarray(matrix, np.float64)
  true_positives = np.diag(matrix)
  union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positives
  present = union > 0
  iou = np.full(len(matrix), np.nan)
  iou[present] = true_positives[present] / union[present]
  mean_iou = float(iou[present].mean()) if present.any() else float('nan')
  return iou, mean_iou


def pixel_accuracy(matrix) -> float:
  """Fraction of counted pixels whose predicted class is right."""
  matrix = np.asarray(matrix, np.float64)
  total = matrix.sum()
  return float(np.trace(matrix) / total) if total else float('nan')
