"""Evaluation: a confusion matrix summed on device over a whole split, and its summary."""

from collections.abc import Callable, Iterable
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplab_jax import crf
from deeplab_jax import inference
from deeplab_jax import metrics
from deeplab_jax import sharding


def inference_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The keyword arguments of `inference.predict_probabilities` that `config.eval` asks for."""
  return dict(scales=tuple(config.eval.scales), flip=config.eval.flip,
              window_size=config.eval.window_size, window_stride=config.eval.window_stride,
              align_corners=config.model.align_corners, crf=crf_params(config),
              mean_rgb=tuple(config.mean_rgb), std_rgb=tuple(config.std_rgb))


def crf_params(config: ml_collections.ConfigDict) -> crf.CRFParams | None:
  """The dense CRF of `config.eval.crf_params` if `config.eval.crf`, else None."""
  if not config.eval.crf:
    return None
  fields = {field.name for field in dataclasses.fields(crf.CRFParams)}
  unknown = sorted(set(config.eval.crf_params) - fields)
  if unknown:
    raise ValueError(f'config.eval.crf_params: unknown {unknown}; expected some of '
                     f'{sorted(fields)}')
  return crf.CRFParams(**config.eval.crf_params)


def make_eval_step(apply_fn: Callable, num_classes: int, ignore_label: int,
                   **options) -> Callable:
  """eval_step(variables, batch) -> ([C, C] confusion matrix, [B, H, W] predictions).

  `options` (scales, flip, sliding windows, CRF) go to `inference.predict_probabilities`, with
  the images' sizes before padding (batch['size']). Padding examples (batch['mask'] False) and
  ignored pixels are left out of the matrix.
  """

  def eval_step(variables, batch):
    logits_fn = lambda images: apply_fn(variables, images, train=False)
    predictions, _ = inference.predict(logits_fn, batch['image'], sizes=batch['size'],
                                       **options)
    labels = jnp.where(batch['mask'][:, None, None], batch['label'], ignore_label)
    return metrics.confusion_matrix(labels, predictions, num_classes, ignore_label), predictions

  return eval_step


def jit_eval_step(eval_step: Callable, mesh: jax.sharding.Mesh) -> Callable:
  """`eval_step` compiled with variables replicated and the batch split over the mesh."""
  replicated, batched = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return jax.jit(eval_step, in_shardings=(replicated, batched),
                 out_shardings=(replicated, batched))


def evaluate(eval_step: Callable, variables, batches: Iterable[dict[str, np.ndarray]],
             mesh: jax.sharding.Mesh,
             num_samples: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Runs `eval_step` over `batches` (this process's numpy batches).

  Returns the confusion matrix summed over all batches and processes, and the first
  `num_samples` local examples of the first batch ('image', 'label', 'prediction').
  """
  total, samples = None, {}
  for batch in batches:
    matrix, predictions = eval_step(variables, sharding.shard_batch(batch, mesh))
    total = matrix if total is None else total + matrix
    if not samples and num_samples:
      samples = {'image': batch['image'][:num_samples], 'label': batch['label'][:num_samples],
                 'prediction': sharding.process_local(predictions)[:num_samples]}
  if total is None:
    raise ValueError('The evaluation split yielded no batches')
  return np.asarray(jax.device_get(total), np.int64), samples


def summarize(matrix: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
  """mean_iou, pixel_accuracy and iou/<class> (NaN for classes absent from data and output)."""
  per_class, mean_iou = metrics.iou_from_confusion(matrix)
  summary = {'mean_iou': mean_iou, 'pixel_accuracy': metrics.pixel_accuracy(matrix)}
  summary.update({f'iou/{name}': float(iou) for name, iou in zip(class_names, per_class)})
  return summary


def format_table(summary: dict[str, float]) -> str:
  """The per-class IoU of `summarize` as a two-column text table."""
  rows = [(key.removeprefix('iou/'), value) for key, value in summary.items()
          if key.startswith('iou/')]
  rows += [('mean IoU', summary['mean_iou']), ('pixel accuracy', summary['pixel_accuracy'])]
  width = max(len(name) for name, _ in rows)
  return '\n'.join(f'  {name:<{width}}  {value:6.4f}' for name, value in rows)
