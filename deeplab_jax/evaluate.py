"""Evaluation: an `Evaluator`, built once for a split and a model, runs the whole split with the
confusion matrix summed on device, and reports the result to TensorBoard, a JSON file and the
log; `evaluate_checkpoint` is `--mode=eval`."""

from collections.abc import Callable
import json

from absl import logging
from clu import metric_writers
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax import checkpointing
from deeplab_jax import experiment
from deeplab_jax import inference
from deeplab_jax import metrics
from deeplab_jax import sharding
from deeplab_jax import visualize
from deeplab_jax.data import datasets
from deeplab_jax.data import input_pipeline


def make_eval_step(predict_fn: Callable, num_classes: int, ignore_label: int) -> Callable:
  """eval_step(variables, batch) -> ([C, C] confusion matrix, number of images, [B, H, W]
  predictions).

  predict_fn is `inference.make_predict_fn`'s. Padding examples (batch['mask'] False) and
  ignored pixels are left out of the matrix and the count.
  """

  def eval_step(variables, batch):
    predictions, _ = predict_fn(variables, batch['image'], batch['size'])
    labels = jnp.where(batch['mask'][:, None, None], batch['label'], ignore_label)
    matrix = metrics.confusion_matrix(labels, predictions, num_classes, ignore_label)
    return matrix, jnp.sum(batch['mask'], dtype=jnp.int32), predictions

  return eval_step


def jit_eval_step(eval_step: Callable, mesh: jax.sharding.Mesh) -> Callable:
  """`eval_step` compiled with variables replicated and the batch split over the mesh."""
  replicated, batched = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return jax.jit(eval_step, in_shardings=(replicated, batched),
                 out_shardings=(replicated, replicated, batched))


class Evaluator:
  """Evaluates model variables over `config.eval_split` with `config.eval`'s inference.

  The dataset and the jitted step are built once; each call runs the whole split.
  """

  def __init__(self, config: ml_collections.ConfigDict, info: datasets.DatasetInfo,
               builder: tfds.core.DatasetBuilder, model, mesh: jax.sharding.Mesh):
    self.config, self.info, self.mesh = config, info, mesh
    image_frame, model_frame = experiment.eval_frames(config, info, builder)
    self.dataset, self.num_batches = input_pipeline.create_eval_dataset(config, info, builder,
                                                                        image_frame)
    predict_fn = inference.make_predict_fn(model, config)
    if config.eval.resize:  # Scored at each image's own size.
      predict_fn = inference.with_resizing(predict_fn, config.eval.resize,
                                           config.eval.resize_size, model_frame,
                                           config.model.align_corners)
    self.eval_step = jit_eval_step(
        make_eval_step(predict_fn, info.num_classes, config.ignore_label), mesh)
    logging.info('Evaluation: %d batches of %d on split %r, the model at %s', self.num_batches,
                 config.eval_batch_size, config.eval_split, model_frame)

  def run(self, variables,
          num_samples: int = 0) -> tuple[np.ndarray, int, dict[str, np.ndarray]]:
    """(the confusion matrix summed over the split and all processes, the number of images it
    counts, the first `num_samples` local examples of the first batch: raw 'image', 'label'
    and 'prediction')."""
    total, num_images, samples = None, 0, {}
    for batch in input_pipeline.as_numpy(self.dataset):
      matrix, count, predictions = self.eval_step(variables,
                                                  sharding.shard_batch(batch, self.mesh))
      total = matrix if total is None else total + matrix
      num_images += count
      if not samples and num_samples:
        samples = {'image': batch['image'][:num_samples], 'label': batch['label'][:num_samples],
                   'prediction': sharding.process_local(predictions)[:num_samples]}
    if total is None:
      raise ValueError('The evaluation split yielded no batches')
    return np.asarray(jax.device_get(total), np.int64), int(num_images), samples

  def __call__(self, variables, step: int, writer: metric_writers.MetricWriter,
               directory: str) -> dict[str, float]:
    """Evaluates `variables`, the weights of `step`; writes the scores, prediction panels,
    class legend and confusion matrix to `writer`, the scores to <directory>/<step>.json, and
    the per-class table to the log. Returns the scores."""
    matrix, num_images, samples = self.run(variables, self.config.num_eval_images)
    summary = {**metrics.summarize(matrix, self.info.class_names), 'num_images': num_images}
    writer.write_scalars(step, {f'eval/{key}': value for key, value in summary.items()})
    images = {'eval/confusion_matrix': visualize.confusion_image(matrix)[None],
              'eval/legend': visualize.legend(self.info.class_names, self.info.palette)[None]}
    if samples:
      images['eval/image_label_prediction'] = visualize.prediction_panels(
          samples['image'], samples['label'], samples['prediction'], self.info.palette,
          self.config.ignore_label)
    writer.write_images(step, images)
    if jax.process_index() == 0:  # `directory` may be gs://.
      tf.io.gfile.makedirs(directory)
      with tf.io.gfile.GFile(tf.io.gfile.join(directory, f'{step}.json'), 'w') as file:
        file.write(json.dumps({'step': step, 'split': self.config.eval_split, **summary},
                              indent=2))
    logging.info('Evaluation at step %d on %d images:\n%s', step, num_images,
                 metrics.format_table(summary))
    return summary


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Evaluates checkpoint `config.eval.checkpoint_step` (default: the latest) of `workdir`.

  Writes the summary to TensorBoard under <workdir>/eval and to <workdir>/eval/<step>.json.
  """
  info, builder, mesh = experiment.prepare(config, splits=(config.eval_split,))
  experiment.check_workdir(workdir)
  model, variables, step = checkpointing.restore_model(config, workdir, mesh)
  evaluator = Evaluator(config, info, builder, model, mesh)
  eval_dir = tf.io.gfile.join(workdir, 'eval')
  writer = metric_writers.create_default_writer(eval_dir, just_logging=jax.process_index() > 0)
  summary = evaluator(variables, step, writer, eval_dir)
  writer.flush()
  return summary
