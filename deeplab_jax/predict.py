"""Segments image files or a dataset split with a trained checkpoint: coloured masks and overlays,
or the files a benchmark's test server takes.

  python -m deeplab_jax.predict --config=configs/shapes.py --workdir=/tmp/deeplab_shapes \
      --input=photos/ --output=/tmp/masks
  python -m deeplab_jax.predict --config=configs/voc.py --workdir=/tmp/deeplab_voc \
      --split=test --format=voc --output=/tmp/voc_submission

--input is an image file, a folder or a glob; --split names a split of the config's dataset
instead (VOC's `test` needs VOC2012test.tar in the manual dir). --format says what each image
gives:
  overlay (default): <stem>.png, a palette PNG of class ids in the dataset's colours, the
    image's size, and <stem>_overlay.jpg.
  voc: results/VOC2012/Segmentation/comp6_test_cls/<id>.png, the palette PNG of class ids the
    VOC evaluation server takes (comp6: trained with data beyond VOC's, as DeepLab's are).
  cityscapes: <id>_leftImg8bit.png, the single-channel PNG of Cityscapes `labelIds` (train ids
    mapped back through cityscapesScripts' table) the Cityscapes server takes.
An unreadable file (not an image, truncated) is reported by name and the rest are still
processed; the exit status then is 1. Inputs and outputs may be gs:// paths.

Images are taken as viewers show them: turned upright by their EXIF orientation (phone photos),
so the mask and overlay have the upright size; any mode becomes RGB as `folder.rgb_pixels` says
(16-bit greyscale scaled, transparency composited over white, CMYK converted). Images are
padded to at least 33 x 33 pixels, so 1 x 1 ones segment too. One over --max_pixels (default
2048 x 2048) is segmented shrunk to fit it (aspect ratio kept, area averaged) and its labels
resized back to its size (nearest), which bounds the memory a large photo (e.g. 6000 x 4000)
takes. Files over PIL's decompression-bomb limit (about 179 megapixels) are refused with an
error naming the limit.
"""

from collections.abc import Iterable, Iterator
import io
import math
import pathlib
import posixpath
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import numpy as np
from PIL import Image
from PIL import ImageOps
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax import checkpointing
from deeplab_jax.config_error import ConfigError, one_line_errors
from deeplab_jax import inference
from deeplab_jax import runtime
from deeplab_jax import sharding
from deeplab_jax.data import datasets
from deeplab_jax.data.datasets import cityscapes
from deeplab_jax.data.datasets import palettes
from deeplab_jax.data.datasets.folder import IMAGE_SUFFIXES
from deeplab_jax.data.datasets.folder import rgb_pixels
from deeplab_jax.visualize import colorize

FLAGS = flags.FLAGS

SIZE_STEP = 32  # Images are padded up to k * 32 + 1 pixels: few shapes, few compilations.
MAX_PIXELS = 2048 * 2048  # --max_pixels' default: larger images are segmented shrunk.
VOC_RESULTS = 'results/VOC2012/Segmentation/comp6_test_cls'  # The VOC server's layout.
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
  return inference.frame_size(size, SIZE_STEP)


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


def write_png(picture: Image.Image, path: str) -> None:
  """`picture` as a PNG file at `path` (may be gs://), its folder made if need be."""
  tf.io.gfile.makedirs(posixpath.dirname(path))
  with tf.io.gfile.GFile(path, 'wb') as file:
    picture.save(file, format='PNG')


def palette_png(label: np.ndarray, palette: np.ndarray) -> Image.Image:
  """A palette PNG whose indices are the class ids of `label`, coloured by `palette`."""
  mask = Image.fromarray(label.astype(np.uint8), mode='L').convert('P')
  mask.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
  mask.frombytes(label.astype(np.uint8).tobytes())  # Palette indices are the class ids.
  return mask


def write_overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray, stem: str,
                  output: str) -> None:
  """<output>/<stem>.png, the class ids as a palette PNG, and <stem>_overlay.jpg."""
  write_png(palette_png(label, palette), tf.io.gfile.join(output, f'{stem}.png'))
  overlay = Image.fromarray(((image.astype(np.uint16) + colorize(label, palette)) // 2)
                            .astype(np.uint8))  # uint16, not float64: large images too.
  with tf.io.gfile.GFile(tf.io.gfile.join(output, f'{stem}_overlay.jpg'), 'wb') as file:
    overlay.save(file, format='JPEG', quality=95)


def write_voc(image: np.ndarray, label: np.ndarray, palette: np.ndarray, stem: str,
              output: str) -> None:
  """The VOC server's layout: a palette PNG of class ids (VOC's colours) named by image id."""
  del image, palette
  write_png(palette_png(label, palettes.pascal(256)), tf.io.gfile.join(output, VOC_RESULTS,
                                                                        f'{stem}.png'))


def write_cityscapes(image: np.ndarray, label: np.ndarray, palette: np.ndarray, stem: str,
                     output: str) -> None:
  """The Cityscapes server's encoding: an 8-bit PNG of labelIds, named after the image."""
  del image, palette
  stem = stem.removesuffix('_leftImg8bit')
  write_png(Image.fromarray(cityscapes.LABEL_IDS[label]),  # uint8 [H, W]: an 8-bit greyscale PNG.
            tf.io.gfile.join(output, f'{stem}_leftImg8bit.png'))


# --format -> (the dataset it encodes, or None for any; its writer).
FORMATS = {'overlay': (None, write_overlay), 'voc': ('voc2012', write_voc),
           'cityscapes': ('cityscapes', write_cityscapes)}


def check_format(config, output_format: str) -> None:
  """Raises a ConfigError unless `output_format` can encode the classes of config.dataset."""
  dataset, _ = FORMATS[output_format]
  if dataset and config.dataset != dataset:
    raise ConfigError('dataset', config.dataset, f'--format={output_format} writes {dataset!r} '
                      "classes: the checkpoint's recipe must train on them", dataset)


def file_images(files: list[str]) -> Iterator[tuple[str, str, np.ndarray | Exception]]:
  """(path, stem, pixels or the UnreadableImageError naming it) of each image file."""
  for path in files:
    try:
      image = read_image(path)
    except UnreadableImageError as error:
      image = error
    yield path, pathlib.PurePosixPath(path).stem, image


def split_images(info: datasets.DatasetInfo, builder: tfds.core.DatasetBuilder,
                 split: str) -> Iterator[tuple[str, str, np.ndarray]]:
  """(name, name, pixels) of each image of `split`."""
  for example in tfds.as_numpy(builder.as_dataset(split, shuffle_files=False)):
    name = example[info.name_key].decode()
    yield name, name, example[info.image_key]


def predict_images(config, workdir: str, images: Iterable[tuple[str, str, Any]], count: int,
                   output: str, max_pixels: int = MAX_PIXELS,
                   output_format: str = 'overlay') -> list[str]:
  """Segments `images` ((name, stem, pixels or an error) each, `count` of them) into `output`
  in `output_format` (see `segment` for `max_pixels`); returns the names that could not be
  read."""
  _, write = FORMATS[output_format]
  info = datasets.get(config.dataset, config.folder)
  model, variables, step = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  predict_fn = jax.jit(inference.make_predict_fn(model, config))
  tf.io.gfile.makedirs(output)
  logging.info('Segmenting %d images with the checkpoint of step %d', count, step)
  failed, start = [], time.perf_counter()
  for index, (name, stem, image) in enumerate(images, 1):
    if isinstance(image, Exception):
      logging.error('Cannot read %s', image)
      failed.append(name)
      continue
    label = segment(predict_fn, variables, image, max_pixels)
    if jax.process_index() == 0:  # Every process computes; one writes.
      write(image, label, info.palette, stem, output)
    elapsed = time.perf_counter() - start
    logging.info('[%d/%d] %s (%.2f images/s)', index, count, name, index / elapsed)
  return failed


def predict_files(config, workdir: str, files: list[str], output: str,
                  max_pixels: int = MAX_PIXELS, output_format: str = 'overlay') -> list[str]:
  """Segments image `files` into `output`; returns the files that could not be read."""
  check_format(config, output_format)
  return predict_images(config, workdir, file_images(files), len(files), output, max_pixels,
                        output_format)


def predict_split(config, workdir: str, split: str, output: str, max_pixels: int = MAX_PIXELS,
                  output_format: str = 'overlay') -> int:
  """Segments every image of `split` of the config's dataset into `output`; returns how many."""
  check_format(config, output_format)
  info, builder = datasets.prepare_dataset(config, (split,))
  count = builder.info.splits[split].num_examples
  predict_images(config, workdir, split_images(info, builder, split), count, output,
                 max_pixels, output_format)
  return count


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if (FLAGS.input is None) == (FLAGS.split is None):
    raise app.UsageError('Give --input (image files) or --split (of the config\'s dataset)')
  runtime.initialize()
  if FLAGS.split:
    count = predict_split(FLAGS.config, FLAGS.workdir, FLAGS.split, FLAGS.output,
                          FLAGS.max_pixels, FLAGS.format)
    print(f'Wrote the {FLAGS.format} files of {count} images of {FLAGS.split} to '
          f'{FLAGS.output}')
    return
  files = input_files(FLAGS.input)
  if not files:
    raise SystemExit(f'--input: no image files in {FLAGS.input}')
  failed = predict_files(FLAGS.config, FLAGS.workdir, files, FLAGS.output, FLAGS.max_pixels,
                         FLAGS.format)
  if failed:
    raise SystemExit(f'{len(failed)} of {len(files)} file(s) could not be read: '
                     f'{", ".join(failed)}')
  print(f'Wrote the {FLAGS.format} files of {len(files)} images to {FLAGS.output}')


def define_flags() -> None:
  """The command line's flags; defined only when run as a program, not on import."""
  config_flags.DEFINE_config_file('config', None, 'The recipe the checkpoint was trained with.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'The training workdir holding checkpoints/.')
  flags.DEFINE_string('input', None, 'An image file, a folder of images, or a glob.')
  flags.DEFINE_string('split', None, "A split of the config's dataset, instead of --input.")
  flags.DEFINE_string('output', None, 'Folder for the label PNGs and overlays.')
  flags.DEFINE_enum('format', 'overlay', list(FORMATS), 'overlay: colour masks and overlays; '
                    "voc, cityscapes: the test server's files.")
  flags.DEFINE_integer('max_pixels', MAX_PIXELS, 'Larger images are segmented shrunk to this '
                       'many pixels and their labels resized back.', lower_bound=1)
  flags.mark_flags_as_required(['config', 'workdir', 'output'])


if __name__ == '__main__':
  define_flags()
  app.run(one_line_errors(main, checkpointing.CheckpointError,
                          datasets.DatasetUnavailableError))
