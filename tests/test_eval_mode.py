"""`--mode=eval`: one checkpoint evaluated over the whole split, checked against a plain numpy
evaluation of the same checkpoint, and with multi-scale + flip inference."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import tiny_shapes_config
from deeplab_jax import checkpointing
from deeplab_jax import evaluate
from deeplab_jax import metrics
from deeplab_jax import sharding
from deeplab_jax import train
from deeplab_jax.data import datasets


def numpy_evaluation(config, workdir, step) -> float:
  """mIoU of checkpoint `step`, one example at a time, padded with the mean pixel as DeepLab
  pads evaluation images."""
  config = config.copy_and_resolve_references()
  config.eval.checkpoint_step = step
  model, variables, _ = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  info = datasets.get('shapes')
  builder = datasets.prepare_builder(info, config.data_dir)
  matrix = np.zeros((4, 4), np.int64)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  for example in builder.as_dataset(config.eval_split).as_numpy_iterator():
    height, width = example['image'].shape[:2]
    padded = np.full((*config.eval_crop_size, 3), 127.5, np.float32)  # The recipe's mean pixel.
    padded[:height, :width] = example['image']
    logits = np.asarray(apply(variables, padded[None]))[0, :height, :width]
    label = example['segmentation_mask'][..., 0].astype(np.int64)
    valid = label != 255
    np.add.at(matrix, (label[valid], logits.argmax(-1)[valid]), 1)
  return metrics.iou_from_confusion(matrix)[1]


def test_eval_mode_evaluates_the_checkpoint(shapes_dir, tmp_path):
  config = tiny_shapes_config(shapes_dir)
  workdir = str(tmp_path / 'work')
  train.train_and_evaluate(config, workdir)  # Checkpoints and evaluations at steps 2 and 4.

  summary = evaluate.evaluate_checkpoint(config, workdir)  # The latest: step 4.
  with open(os.path.join(workdir, 'eval', '4.json')) as file:
    saved = json.load(file)
  assert saved['step'] == 4 and saved['split'] == config.eval_split
  assert saved['num_images'] == 20  # validation[:20], padded to 3 batches of 8.
  assert saved['mean_iou'] == pytest.approx(summary['mean_iou'])
  assert set(saved) >= {'pixel_accuracy', 'iou/background', 'iou/circle', 'iou/square',
                        'iou/triangle'}
  assert summary['mean_iou'] == pytest.approx(numpy_evaluation(config, workdir, 4), abs=1e-3)

  config.eval.scales, config.eval.flip = (0.75, 1.0, 1.25), True
  config.eval.checkpoint_step = 2
  multi_scale = evaluate.evaluate_checkpoint(config, workdir)
  assert 0 <= multi_scale['mean_iou'] <= 1 and 0 <= multi_scale['pixel_accuracy'] <= 1

  config.eval.checkpoint_step = 7
  with pytest.raises(ValueError, match=r'No checkpoint of step 7 .* there are \[2, 4\]'):
    evaluate.evaluate_checkpoint(config, workdir)
