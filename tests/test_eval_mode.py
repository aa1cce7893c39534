"""`--mode=eval`: one checkpoint evaluated over the whole split, checked against a plain numpy
evaluation of the same checkpoint, and with multi-scale + flip inference."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import tiny_shapes_config
from test_inference import numpy_resize
from deeplab_jax import checkpointing
from deeplab_jax import evaluate
from deeplab_jax import experiment
from deeplab_jax import metrics
from deeplab_jax import sharding
from deeplab_jax import train
from deeplab_jax.data import datasets


def numpy_evaluation(config, workdir, step, long_side=None) -> float:
  """mIoU of checkpoint `step`, one example at a time, padded with the mean pixel as DeepLab
  pads evaluation images; with `long_side`, each image resized to it and the probabilities
  resized back (np.interp)."""
  config = config.copy_and_resolve_references()
  config.eval.checkpoint_step = step
  model, variables, _ = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  info = datasets.get('shapes')
  builder = datasets.prepare_builder(info, config.data_dir)
  matrix = np.zeros((4, 4), np.int64)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  align_corners = config.model.align_corners
  for example in builder.as_dataset(config.eval_split).as_numpy_iterator():
    image = example['image'].astype(np.float64)
    height, width = size = image.shape[:2]
    if long_side:
      scale = long_side / max(size)
      size = tuple(int(np.floor(side * scale + 0.5)) for side in size)
      image = numpy_resize(image, size, align_corners)
    padded = np.full((*config.eval_crop_size, 3), 127.5, np.float32)  # The recipe's mean pixel.
    padded[:size[0], :size[1]] = image
    logits = np.asarray(apply(variables, padded[None]))[0, :size[0], :size[1]]
    if long_side:
      logits = numpy_resize(np.asarray(jax.nn.softmax(logits)), (height, width), align_corners)
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


def test_eval_of_resized_images_larger_than_the_crop(tiny_checkpoint):
  """The 64 x 64 images at a long side of 40, in a 49 x 49 crop, scored at 64 x 64."""
  config, workdir = tiny_checkpoint
  config = config.copy_and_resolve_references()
  config.eval.resize, config.eval.resize_size = 'long_side', (40,)
  config.eval_crop_size = (49, 49)
  summary = evaluate.evaluate_checkpoint(config, workdir)
  assert summary['mean_iou'] == pytest.approx(
      numpy_evaluation(config, workdir, 4, long_side=40), abs=1e-3)
  config.eval_crop_size = None  # Sized to the split: the least k * 16 + 1 holding 40.
  info = datasets.get('shapes')
  assert experiment.eval_frames(config, info, datasets.prepare_builder(
      info, config.data_dir)) == ((64, 64), (49, 49))


def test_eval_of_converted_variables_in_init_from(tiny_checkpoint, tmp_path):
  """A workdir with no checkpoint evaluates init_from's variables (e.g. torchvision's, converted)
  as step 0: here the tiny checkpoint's, saved as `convert` saves them."""
  config, workdir = tiny_checkpoint
  config = config.copy_and_resolve_references()
  _, variables, _ = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  checkpointing.save_variables(str(tmp_path / 'converted'), jax.device_get(variables))
  config.init_from = str(tmp_path / 'converted')
  summary = evaluate.evaluate_checkpoint(config, str(tmp_path / 'empty_workdir'))
  with open(tmp_path / 'empty_workdir' / 'eval' / '0.json') as file:
    assert json.load(file)['mean_iou'] == pytest.approx(summary['mean_iou'])
  assert summary['mean_iou'] == pytest.approx(numpy_evaluation(config, workdir, 4), abs=1e-3)

  config.model.width = 0.5  # Another model: every mismatch is named.
  with pytest.raises(checkpointing.CheckpointMismatch, match=r'converted: (params|batch_stats)/.* has shape'):
    evaluate.evaluate_checkpoint(config, str(tmp_path / 'empty_workdir'))
