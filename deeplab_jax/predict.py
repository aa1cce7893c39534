"""Segments image files with a trained checkpoint: a label PNG and a colour overlay per image.

  python -m deeplab_jax.predict --config=configs/shapes.py --workdir=/tmp/deeplab_shapes \
      --input=photos/ --output=/tmp/masks

--input is an image file, a folder or a glob. Each image gives <stem>.png (a palette PNG of class
ids in the dataset's colours, the image's size) and <stem>_overlay.jpg. An unreadable file (not
an image, truncated) is reported by name and the rest are still processed; the exit status then
is 1. Inputs and outputs may be gs:// paths.

Images are taken as viewers show them: turned upright by their EXIF orientation (phone photos),
so the mask and overlay have the upright size; any mode becomes RGB as `folder.rgb_pixels` says
(16-bit greyscale scaled, transparency composited over white, CMYK converted). Images are
padded to at least 33 x 33 pixels, so 1 x 1 ones segment too. One over --max_pixels (default
2048 x 2048) is segmented shrunk to fit it (aspect ratio kept, area averaged) and its labels
resized back to its size (nearest), which bounds the memory a large photo (e.g. 6000 x 4000)
takes. Files over PIL's decompression-bomb limit (about 179 megapixels) are refused with an
error naming the limit.
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
from PIL import ImageOps
import tensorflow as tf

from deeplab_jax import checkpointing
from deeplab_jax.config_error import one_line_errors
from deeplab_jax import inference
from deeplab_jax import runtime
from deeplab_jax import sharding
from deeplab_jax.data import datasets
from deeplab_jax.data.datasets.folder import IMAGE_SUFFIXES
from deeplab_jax.data.datasets.folder import rgb_pixels
from deeplab_jax.visualize import colorize

FLAGS = flags.FLAGS

SIZE_STEP = 32  # Images are padded up to k * 32 + 1 pixels: few shapes, few compilations.
MAX_PIXELS = 2048 * 2048  # --max_pixels' default: larger images are segmented shrunk.
# What PIL raises on a file it cannot decode, and gfile on one it cannot read.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                 tf.errors.OpError)


class UnreadableImageError(Exception):
  """A file that is not an image PIL decodes whole; the message names it."""


def input_files(pattern: str) -> list[str]:
  """The image files `pattern` names: a file, the images of a folder, or a glob's matches."""
  if tf.io.gfile.isdir(pattern):
    return sorted(tf.io.gfile.join(pattern, name) for name in tf.io.gfile.listdir(pattern)
                  if name.lower().endswith(IMAGE_SUFFIXES))
  return sorted(tf.io.gfile.glob(pattern)) if any(c in pattern for c in '*?[') else [pattern]


def padded_size(size: int) -> int:
  """The least k * SIZE_STEP + 1 >= `size` with k >= 1: 33 at least, output_stride + 1 for the
  largest output stride (32), so even a 1 x 1 image gives every model the input it needs."""
  return max(1, math.ceil((size - 1) / SIZE_STEP)) * SIZE_STEP + 1


def reduced_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
  """(height, width) shrunk, aspect ratio kept, to at most `max_pixels` pixels."""
  if height * width <= max_pixels:
    return height, width
  small_height = min(max(1, math.isqrt(max_pixels * height // width)), max_pixels)
  return small_height, min(max(1, width * small_height // height), max_pixels // small_height)


def segment_padded(predict_fn, variables, image: np.ndarray) -> np.ndarray:
  """[H, W] class ids of a uint8 RGB image, padded (to few distinct shapes) as in evaluation."""
  height, width = image.shape[:2]
  padded = np.zeros((1, padded_size(height), padded_size(width), 3), np.uint8)
  padded[0, :height, :width] = image
  labels, _ = predict_fn(variables, padded, np.array([[height, width]], np.int32))
  return np.asarray(labels)[0, :height, :width]


def segment(predict_fn, variables, image: np.ndarray,
            max_pixels: int = MAX_PIXELS) -> np.ndarray:
  """[H, W] class ids of a uint8 RGB image; one over `max_pixels` is segmented shrunk (area
  averaged) and its labels resized back (nearest), to bound memory."""
  height, width = image.shape[:2]
  small_height, small_width = reduced_size(height, width, max_pixels)
  if (small_height, small_width) == (height, width):
    return segment_padded(predict_fn, variables, image)
  logging.info('%dx%d is over max_pixels=%d: segmented at %dx%d, labels resized back', width,
               height, max_pixels, small_width, small_height)
  small = Image.fromarray(image).resize((small_width, small_height), Image.Resampling.BOX)
  labels = segment_padded(predict_fn, variables, np.asarray(small))
  return np.asarray(Image.fromarray(labels.astype(np.int32)).resize(
      (width, height), Image.Resampling.NEAREST))


def read_image(path: str) -> np.ndarray:
  """uint8 RGB pixels of an image file as viewers show it: turned upright by its EXIF orientation
  (`path` may be gs://). A file PIL cannot decode whole raises UnreadableImageError naming it."""
  try:
    with tf.io.gfile.GFile(path, 'rb') as file, Image.open(io.BytesIO(file.read())) as image:
      return rgb_pixels(ImageOps.exif_transpose(image))
  except Image.UnidentifiedImageError:
    raise UnreadableImageError(f'{path}: not an image file PIL knows') from None
  except DECODE_ERRORS as error:
    raise UnreadableImageError(f'{path}: {error}') from None


def save_outputs(image: np.ndarray, label: np.ndarray, palette: np.ndarray, stem: str,
                 output: str) -> None:
  """<output>/<stem>.png, the class ids as a palette PNG, and <stem>_overlay.jpg."""
  mask = Image.fromarray(label.astype(np.uint8), mode='L').convert('P')
  mask.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
  mask.frombytes(label.astype(np.uint8).tobytes())  # Palette indices are the class ids.
  overlay = Image.fromarray(((image.astype(np.uint16) + colorize(label, palette)) // 2)
                            .astype(np.uint8))  # uint16, not float64: large images too.
  for picture, name, options in ((mask, f'{stem}.png', {'format': 'PNG'}),
                                 (overlay, f'{stem}_overlay.jpg', {'format': 'JPEG',
                                                                   'quality': 95})):
    with tf.io.gfile.GFile(tf.io.gfile.join(output, name), 'wb') as file:
      picture.save(file, **options)


def predict_files(config, workdir: str, files: list[str], output: str,
                  max_pixels: int = MAX_PIXELS) -> list[str]:
  """Segments `files` into `output` (see `segment` for `max_pixels`); returns the files that
  could not be read."""
  info = datasets.get(config.dataset, config.folder)
  model, variables, step = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  predict_fn = jax.jit(inference.make_predict_fn(model, config))
  tf.io.gfile.makedirs(output)
  logging.info('Segmenting %d images with the checkpoint of step %d', len(files), step)
  failed, start = [], time.perf_counter()
  for index, path in enumerate(files, 1):
    try:
      image = read_image(path)
    except UnreadableImageError as error:
      logging.error('Cannot read %s', error)
      failed.append(path)
      continue
    label = segment(predict_fn, variables, image, max_pixels)
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
  failed = predict_files(FLAGS.config, FLAGS.workdir, files, FLAGS.output, FLAGS.max_pixels)
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
  flags.DEFINE_integer('max_pixels', MAX_PIXELS, 'Larger images are segmented shrunk to this '
                       'many pixels and their labels resized back.', lower_bound=1)
  flags.mark_flags_as_required(['config', 'workdir', 'input', 'output'])


if __name__ == '__main__':
  define_flags()
  app.run(one_line_errors(main, checkpointing.CheckpointError))
