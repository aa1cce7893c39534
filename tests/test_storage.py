"""What the library writes besides checkpoints (config.json, eval JSON, TensorBoard events,
predicted PNGs) goes through tf.io.gfile, so gs:// works: checked on TF's in-memory ram://
file system, which needs no network. (Orbax checkpoints on gs:// are Orbax's own.)"""

import io
import json

from clu import metric_writers
import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab_jax import checkpointing
from deeplab_jax import evaluate
from deeplab_jax import experiment
from deeplab_jax import predict
from deeplab_jax import train


def read_image(path: str) -> np.ndarray:
  with tf.io.gfile.GFile(path, 'rb') as file:
    return np.asarray(Image.open(io.BytesIO(file.read())))


def test_config_json_on_a_remote_file_system(tiny_checkpoint):
  config, _ = tiny_checkpoint
  train.write_config(config, 'ram://storage/run')
  with tf.io.gfile.GFile('ram://storage/run/config.json') as file:
    assert json.load(file) == json.loads(config.to_json_best_effort())


def test_evaluation_on_a_remote_file_system(tiny_checkpoint):
  config, workdir = tiny_checkpoint
  info, builder, mesh = experiment.prepare(config)
  model, variables, step = checkpointing.restore_model(config, workdir, mesh)
  # The TensorBoard writer that create_default_writer makes (its epath handles gs://, not
  # ram://, so the test makes the writer itself).
  writer = metric_writers.SummaryWriter('ram://storage/eval')
  summary = evaluate.Evaluator(config, info, builder, model, mesh)(
      variables, step, writer, 'ram://storage/eval')
  writer.flush()
  with tf.io.gfile.GFile(f'ram://storage/eval/{step}.json') as file:
    assert json.load(file)['mean_iou'] == summary['mean_iou']
  [events] = tf.io.gfile.glob('ram://storage/eval/events.out.tfevents.*')
  tags = {value.tag for event in tf.compat.v1.train.summary_iterator(events)
          for value in event.summary.value}
  assert {'eval/mean_iou', 'eval/image_label_prediction'} <= tags


def test_predict_reads_and_writes_a_remote_file_system(tiny_checkpoint):
  config, workdir = tiny_checkpoint
  image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
  with tf.io.gfile.GFile('ram://storage/inputs/photo.png', 'wb') as file:
    Image.fromarray(image).save(file, format='PNG')
  files = predict.input_files('ram://storage/inputs/*.png')
  assert files == ['ram://storage/inputs/photo.png']
  assert predict.predict_files(config, workdir, files, 'ram://storage/masks') == []
  assert sorted(tf.io.gfile.listdir('ram://storage/masks')) == ['photo.png',
                                                                 'photo_overlay.jpg']
  assert read_image('ram://storage/masks/photo.png').shape == (30, 40)
  assert read_image('ram://storage/masks/photo_overlay.jpg').shape == (30, 40, 3)
