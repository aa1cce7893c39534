"""A checkpoint's device exports against its JAX model: file size, CPU latency per image and,
with --evaluate, validation mIoU. LiteRT float and int8 (ai-edge-litert), and ONNX (onnxruntime).

  python benchmarks/device_exports.py --config=configs/camvid.py --workdir=/tmp/camvid \
      --config.folder.root=/path/to/camvid --evaluate

Every runtime gets float32 [1, h, w, 3] pixels at `eval_crop_size`, as a device would: the image
fitted into it (aspect ratio kept) and padded with the model's mean pixel. mIoU scores the argmax
over the image's own region against its labels, so --evaluate needs images that fit the crop.
Latency is the median of --repetitions runs on one image after a warm-up, each runtime on all of
this machine's cores; JAX's is the jitted `model.apply`.
"""

import os
import statistics
import time

from absl import app
from absl import flags
from ai_edge_litert.interpreter import Interpreter
import jax
from ml_collections import config_flags
import numpy as np
import onnxruntime

from deeplab_jax import checkpointing
from deeplab_jax import export
from deeplab_jax import metrics
from deeplab_jax import sharding
from deeplab_jax.data import datasets
from deeplab_jax.data import input_pipeline

config_flags.DEFINE_config_file('config', None, 'The recipe the checkpoint was trained with.')
flags.DEFINE_string('workdir', None, 'The training workdir holding checkpoints/.')
flags.DEFINE_bool('evaluate', False, 'Also score each runtime on the eval split.')
flags.DEFINE_integer('repetitions', 20, 'Timed runs per runtime.')
flags.DEFINE_integer('representative_images', 100, 'Training images that calibrate int8.')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def litert_runner(flatbuffer: bytes):
  interpreter = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count())
  interpreter.allocate_tensors()
  [image], [logits] = interpreter.get_input_details(), interpreter.get_output_details()

  def run(pixels):
    interpreter.set_tensor(image['index'], pixels)
    interpreter.invoke()
    return interpreter.get_tensor(logits['index'])
  return run


def onnx_runner(model: bytes):
  session = onnxruntime.InferenceSession(model, providers=['CPUExecutionProvider'])
  return lambda pixels: session.run(['logits'], {'image': pixels})[0]


def jax_runner(model, variables):
  apply = jax.jit(lambda pixels: model.apply(variables, pixels, train=False))
  return lambda pixels: np.asarray(apply(pixels))


def median_latency(run, pixels: np.ndarray, repetitions: int) -> float:
  run(pixels)
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    run(pixels)
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def eval_examples(config, mean_rgb):
  """(float32 [1, h, w, 3] padded pixels, int32 [H, W] labels) of each eval image."""
  info, builder = datasets.prepare_dataset(config, (config.eval_split,))
  height, width = config.eval_crop_size
  examples = builder.as_dataset(config.eval_split, shuffle_files=False)
  for image, label in examples.map(lambda e: input_pipeline.decode(e, info, config)):
    image, label = image.numpy(), label.numpy()[..., 0]
    if image.shape[0] > height or image.shape[1] > width:
      raise ValueError(f'An eval image of {image.shape[:2]} does not fit eval_crop_size '
                       f'{(height, width)}: --evaluate scores images that fit.')
    pixels = np.empty((1, height, width, 3), np.float32)
    pixels[:] = mean_rgb
    pixels[0, :image.shape[0], :image.shape[1]] = image
    yield pixels, label


def main(argv):
  del argv
  config = FLAGS.config
  model, variables, step = checkpointing.restore_model(config, FLAGS.workdir,
                                                       sharding.create_mesh())
  variables = jax.device_get(variables)
  mean_rgb = model.normalization.mean_rgb
  print(f'{config.model.architecture} on {config.model.backbone}, step {step}, '
        f'{config.eval_crop_size[0]}x{config.eval_crop_size[1]}, {os.cpu_count()} CPUs')
  representative = export.representative_images(config, mean_rgb, FLAGS.representative_images)
  exports = {'LiteRT float': export.tflite_model(config, model, variables),
             'LiteRT int8': export.tflite_model(config, model, variables, representative),
             'ONNX': export.onnx_model(config, model, variables)}
  runners = {'JAX': jax_runner(model, variables),
             'LiteRT float': litert_runner(exports['LiteRT float']),
             'LiteRT int8': litert_runner(exports['LiteRT int8']),
             'ONNX': onnx_runner(exports['ONNX'])}
  pixels = np.random.default_rng(0).uniform(0, 255, (1, *config.eval_crop_size, 3))
  pixels = pixels.astype(np.float32)
  # JAX's size: its variables in float32, as a checkpoint holds them.
  sizes = {'JAX': sum(leaf.nbytes for leaf in jax.tree.leaves(variables)),
           **{name: len(content) for name, content in exports.items()}}

  confusions = {name: 0 for name in runners}
  agreeing = {name: 0 for name in runners}  # Pixels whose class is JAX's.
  pixel_count = 0
  if FLAGS.evaluate:
    for pixels_one, label in eval_examples(config, mean_rgb):
      predictions = {name: run(pixels_one)[0].argmax(-1)[:label.shape[0], :label.shape[1]]
                     for name, run in runners.items()}
      pixel_count += label.size
      for name, prediction in predictions.items():
        confusions[name] += np.asarray(metrics.confusion_matrix(
            label, prediction, config.model.num_classes, config.ignore_label))
        agreeing[name] += (prediction == predictions['JAX']).sum()

  evaluated = ' mIoU | pixels as JAX |' if FLAGS.evaluate else ''
  print('| runtime | size (MB) | latency (ms) |' + evaluated)
  print('|---|---|---|' + ('---|---|' if FLAGS.evaluate else ''))
  for name, run in runners.items():
    latency = median_latency(run, pixels, FLAGS.repetitions)
    row = f'| {name} | {sizes[name] / 1e6:.2f} | {latency * 1e3:.1f} |'
    if FLAGS.evaluate:
      row += (f' {metrics.iou_from_confusion(confusions[name])[1]:.4f} |'
              f' {agreeing[name] / pixel_count:.2%} |')
    print(row)


if __name__ == '__main__':
  app.run(main)
