"""Segments image files with a trained checkpoint: a label PNG and a colour overlay per image.

  python -m deeplab_jax.predict --config=configs/shapes.py --workdir=/tmp/deeplab_shapes \
      --input=photos/ --output=/tmp/masks

--input is an image file, a folder or a glob. Each image gives <stem>.png (a palette PNG of class
ids in the dataset's colours, the image's size) and <stem>_overlay.jpg. An unreadable file is
reported by name and the rest are still processed; the exit status then is 1. Inputs and outputs
may be gs:// paths.
"""

import io
import math
import pathlib
import time

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab_jax import checkpointing
from deeplab_jax.config_error import one_line_config_errors
from deeplab_jax import inference
from deeplab_jax import runtime
from deeplab_jax import sharding
from deeplab_jax.data import datasets
from deeplab_jax.data.datasets.folder import IMAGE_SUFFIXES
from deeplab_jax.visualize import colorize

FLAGS = flags.FLAGS

SIZE_STEP = 32  # Images are padded up to k * 32 + 1 pixels: few shapes, few compilations.


def input_files(pattern: str) -> list[str]:
  """The image files `pattern` names: a file, the images of a folder, or a glob's matches."""
  if tf.io.gfile.isdir(pattern):
    return sorted(tf.io.gfile.join(pattern, name) for name in tf.io.gfile.listdir(pattern)
                  if name.lower().endswith(IMAGE_SUFFIXES))
  return sorted(tf.io.gfile.glob(pattern)) if any(c in pattern for c in '*?[') else [pattern]


def padded_size(size: int) -> int:
  return math.ceil((size - 1) / SIZE_STEP) * SIZE_STEP + 1


def segment(predict_fn, variables, image: np.ndarray) -> np.ndarray:
  """[H, W] class ids of a uint8 RGB image, padded (to few distinct shapes) as in evaluation."""
  height, width = image.shape[:2]
  padded = np.zeros((1, padded_size(height), padded_size(width), 3), np.uint8)
  padded[0, :height, :width] = image
  labels, _ = predict_fn(variables, padded, np.array([[height, width]], np.int32))
  return np.asarray(labels)[0, :height, :width]


def read_image(path: str) -> np.ndarray:
  """uint8 RGB pixels of an image file (`path` may be gs://)."""
  with tf.io.gfile.GFile(path, 'rb') as file, Image.open(io.BytesIO(file.read())) as image:
    return np.asarray(image.convert('RGB'))


def save_outputs(image: np.ndarray, label: np.ndarray, palette: np.ndarray, stem: str,
                 output: str) -> None:
  """<output>/<stem>.png, the class ids as a palette PNG, and <stem>_overlay.jpg."""
  mask = Image.fromarray(label.astype(np.uint8), mode='L').convert('P')
  mask.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
  mask.frombytes(label.astype(np.uint8).tobytes())  # Palette indices are the class ids.
  overlay = Image.fromarray((0.5 * image + 0.5 * colorize(label, palette)).astype(np.uint8))
  for picture, name, options in ((mask, f'{stem}.png', {'format': 'PNG'}),
                                 (overlay, f'{stem}_overlay.jpg', {'format': 'JPEG',
                                                                   'quality': 95})):
    with tf.io.gfile.GFile(tf.io.gfile.join(output, name), 'wb') as file:
      picture.save(file, **options)


def predict_files(config, workdir: str, files: list[str], output: str) -> list[str]:
  """Segments `files` into `output`; returns the files that could not be read."""
  info = datasets.get(config.dataset, config.folder)
  model, variables, step = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  predict_fn = jax.jit(inference.make_predict_fn(model, config))
  tf.io.gfile.makedirs(output)
  logging.info('Segmenting %d images with the checkpoint of step %d', len(files), step)
  failed, start = [], time.perf_counter()
  for index, path in enumerate(files, 1):
    try:
      image = read_image(path)
    except (OSError, SyntaxError, tf.errors.OpError) as error:
      logging.error('Cannot read %s: %s', path, error)
      failed.append(path)
      continue
    label = segment(predict_fn, variables, image)
    if jax.process_index() == 0:  # Every process computes; one writes.
      save_outputs(image, label, info.palette, pathlib.PurePosixPath(path).stem, output)
    elapsed = time.perf_counter() - start
    logging.info('[%d/%d] %s (%.2f images/s)', index, len(files), path, index / elapsed)
  return failed


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  runtime.initialize()
  files = input_files(FLAGS.input)
  if not files:
    raise SystemExit(f'--input: no image files in {FLAGS.input}')
  failed = predict_files(FLAGS.config, FLAGS.workdir, files, FLAGS.output)
  if failed:
    raise SystemExit(f'{len(failed)} of {len(files)} file(s) could not be read: '
                     f'{", ".join(failed)}')
  print(f'Wrote {len(files)} label PNGs and overlays to {FLAGS.output}')


def define_flags() -> None:
  """The command line's flags; defined only when run as a program, not on import."""
  config_flags.DEFINE_config_file('config', None, 'The recipe the checkpoint was trained with.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'The training workdir holding checkpoints/.')
  flags.DEFINE_string('input', None, 'An image file, a folder of images, or a glob.')
  flags.DEFINE_string('output', None, 'Folder for the label PNGs and overlays.')
  flags.mark_flags_as_required(['config', 'workdir', 'input', 'output'])


if __name__ == '__main__':
  define_flags()
  app.run(one_line_config_errors(main))
