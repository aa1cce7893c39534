"""End to end on the embedded dataset: train, evaluate, log, checkpoint, and resume."""

import gc
import glob
import json
import os
import re

import jax
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_shapes_config
from deeplab_jax import checkpointing
from deeplab_jax import train
from deeplab_jax import workdir_lock
from deeplab_jax.config_error import ConfigError


def event_steps(path: str) -> dict[str, set[int]]:
  """{tag: steps written} of one TensorBoard event file."""
  steps = {}
  for event in tf.compat.v1.train.summary_iterator(path):
    for value in event.summary.value:
      steps.setdefault(value.tag, set()).add(event.step)
  return steps


def event_scalar(path: str, tag: str, step: int) -> float:
  for event in tf.compat.v1.train.summary_iterator(path):
    for value in event.summary.value:
      if value.tag == tag and event.step == step:
        return float(tf.make_ndarray(value.tensor))
  raise KeyError((tag, step))


def test_train_evaluate_then_resume(shapes_dir, tmp_path, monkeypatch):
  config = tiny_shapes_config(shapes_dir)
  workdir = str(tmp_path / 'work')
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 4
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  [first_events] = glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  steps = event_steps(first_events)
  for tag in ('train/loss', 'train/learning_rate', 'steps_per_sec'):
    assert steps[tag] == {2, 4}, tag
  for tag in ('eval/mean_iou', 'eval/pixel_accuracy', 'eval/iou/background', 'eval/iou/circle',
              'eval/iou/square', 'eval/iou/triangle', 'eval/image_label_prediction',
              'eval/confusion_matrix', 'eval/legend'):
    assert steps[tag] == {2, 4}, tag
  # Each evaluation's scores also go to eval/<step>.json, the same as in TensorBoard.
  for step in (2, 4):
    with open(os.path.join(workdir, 'eval', f'{step}.json')) as file:
      scores = json.load(file)
    assert scores['step'] == step and scores['split'] == config.eval_split
    assert scores['mean_iou'] == pytest.approx(
        event_scalar(first_events, 'eval/mean_iou', step), rel=1e-6)

  # Restart with more steps: it must continue from step 4 with the saved optimizer state.
  restored = []
  restore_latest = checkpointing.restore_latest

  def remember_restored(*args):  # The train step donates (deletes) the state it is given.
    result = restore_latest(*args)
    restored.append(jax.device_get(result))
    return result

  # Another model in the same workdir fails before training, naming the first parameter whose
  # shape differs and the config keys that differ.
  other = tiny_shapes_config(shapes_dir)
  other.model.width, other.batch_size = 0.25, 16
  with pytest.raises(checkpointing.CheckpointError,
                     match=r'Checkpoint step 4 in .* holds another model: params/aspp/atrous1/'
                     r'conv/kernel is \(3, 3, 64, 16\) there and \(3, 3, 128, 16\) in this '
                     r'config; the config keys that differ from its config\.json: batch_size '
                     r'\(8 -> 16\), model\.width \(0\.125 -> 0\.25\)'):
    train.train_and_evaluate(other, workdir)
  # The same model on other data: the config keys alone tell.
  other = tiny_shapes_config(shapes_dir)
  other.batch_size = 16
  with pytest.raises(ConfigError, match=r'config.batch_size=16: the checkpoints in .* were '
                     r'trained with 8 .* these do: batch_size\. .*e.g. --config.batch_size=8'):
    train.train_and_evaluate(other, workdir)
  other = tiny_shapes_config(shapes_dir)
  other.learning_rate_multipliers = (('classifier', 10.0),)  # Another optimizer state.
  with pytest.raises(ConfigError, match=r"config.learning_rate_multipliers=.*'classifier', "
                     r"10.0.*: the checkpoints in .* were trained with \[\] .*optimizer state"):
    train.train_and_evaluate(other, workdir)

  monkeypatch.setattr(checkpointing, 'restore_latest', remember_restored)
  config.num_train_steps = 6  # Safe to change: allowed.
  resumed = train.train_and_evaluate(config, workdir)
  [(restored_state, restored_step)] = restored
  assert restored_step == 4
  saved = jax.device_get(state)
  momentum = jax.tree.leaves(saved.opt_state)
  assert any(np.abs(leaf).max() > 0 for leaf in momentum)
  for name in ('params', 'batch_stats', 'opt_state', 'step'):
    jax.tree.map(np.testing.assert_array_equal, getattr(restored_state, name),
                 getattr(saved, name))
  assert int(resumed.step) == 6
  second_events = (set(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))) -
                   {first_events}).pop()
  assert event_steps(second_events)['train/loss'] == {6}  # Steps 1-4 were not run again.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4', '6']


def test_stop_request_saves_and_stops(shapes_dir, tmp_path, monkeypatch):
  config = tiny_shapes_config(shapes_dir)
  config.checkpoint_every_steps = 100
  monkeypatch.setattr(checkpointing.StopRequest, '__call__', lambda self, step: step == 3)
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 3
  assert os.listdir(tmp_path / 'checkpoints') == ['3']



def largest_file(directory) -> str:
  files = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
  return max(files, key=os.path.getsize)


# Orbax 0.12.8 abandons the other reads of a failed restore. Collected, their coroutines turn
# GeneratorExit into an Exception (`except BaseException` in serialization.py's
# _read_array_index_and_device_put), and TensorStore's callbacks find Orbax's event loop closed:
# Python can only report both. They are collected here rather than in a later test.
@pytest.mark.filterwarnings('ignore:Exception ignored in. <coroutine object '
                            '_read_array_index_and_device_put'
                            ':pytest.PytestUnraisableExceptionWarning')
@pytest.mark.filterwarnings('ignore:(?s)Exception ignored in. None.*Event loop is closed'
                            ':pytest.PytestUnraisableExceptionWarning')
def test_a_damaged_checkpoint_is_named_and_the_previous_one_resumes(shapes_dir, tmp_path):
  config = tiny_shapes_config(shapes_dir)
  config.eval_every_steps = 100
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  config.num_train_steps = 6
  damaged = (r'Checkpoint step 4 in .* is damaged: .*To go on, use the previous checkpoint, '
             r'step 2, with --config.resume_step=2\.$')
  truncated = r'is damaged: OUT_OF_RANGE: Error reading "[^"]+" in OCDBT database at local file'
  with open(largest_file(tmp_path / 'checkpoints' / '4'), 'r+b') as file:
    file.truncate(100)  # A write cut short.
  with pytest.raises(checkpointing.CheckpointError, match=damaged) as raised:
    train.train_and_evaluate(config, workdir)
  assert re.search(truncated, str(raised.value))  # TensorStore's error, not Orbax's wrapper.
  os.remove(tmp_path / 'checkpoints' / '4' / 'default' / '_METADATA')  # A file lost.
  with pytest.raises(checkpointing.CheckpointError, match=damaged):
    train.train_and_evaluate(config, workdir)
  gc.collect()

  config.resume_step = 3
  with pytest.raises(ConfigError, match=r'config.resume_step=3: .* holds no checkpoint of that '
                     r'step, only of \[2, 4\]; e.g. --config.resume_step=4'):
    train.train_and_evaluate(config, workdir)

  config.resume_step = 2
  assert int(train.train_and_evaluate(config, workdir).step) == 6
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4', '6']  # 4 written again.
  [aside] = os.listdir(tmp_path / 'checkpoints_set_aside')
  assert aside.startswith('4-')

  # Another model's checkpoint, and no config.json to compare with.
  os.remove(tmp_path / 'config.json')
  config.resume_step, config.model.aspp_features = None, 24
  with pytest.raises(checkpointing.CheckpointMismatch,
                     match=r'Checkpoint step 6 in .* holds another model: params/aspp/atrous1/bn/'
                     r'bias is \(16,\) there and \(24,\) in this config; .*config\.json is '
                     r'missing'):
    train.train_and_evaluate(config, workdir)


def test_a_second_job_on_a_live_jobs_workdir_refuses(shapes_dir, tmp_path):
  with workdir_lock.WorkdirLock(str(tmp_path)):  # This process stands for the live job.
    with pytest.raises(workdir_lock.WorkdirInUse, match=rf'{tmp_path} is in use by another '
                       rf'training job: pid {os.getpid()} '):
      train.train_and_evaluate(tiny_shapes_config(shapes_dir), str(tmp_path))
