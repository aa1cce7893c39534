"""Segmentation metrics from a confusion matrix: per-class IoU, mean IoU, pixel accuracy, and
their summary as a dict and a table."""

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


def summarize(matrix, class_names: tuple[str, ...]) -> dict[str, float]:
  """mean_iou, pixel_accuracy and iou/<class> (NaN for classes absent from data and output)."""
  per_class, mean_iou = iou_from_confusion(matrix)
  summary = {'mean_iou': mean_iou, 'pixel_accuracy': pixel_accuracy(matrix)}
  summary.update({f'iou/{name}': float(iou) for name, iou in zip(class_names, per_class)})
  return summary


def format_table(summary: dict[str, float]) -> str:
  """The per-class IoU of `summarize` as a two-column text table."""
  rows = [(key.removeprefix('iou/'), value) for key, value in summary.items()
          if key.startswith('iou/')]
  rows += [('mean IoU', summary['mean_iou']), ('pixel accuracy', summary['pixel_accuracy'])]
  width = max(len(name) for name, _ in rows)
  return '\n'.join(f'  {name:<{width}}  {value:6.4f}' for name, value in rows)
