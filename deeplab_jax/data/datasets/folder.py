"""Your own images and label PNGs as a TFDS dataset (`segmentation_folder`), with no code.

Two layouts are understood (an image and its label share a file stem):

    root/images/*.jpg|png  root/labels/*.png  [root/splits/<split>.txt: one stem a line]
    root/<split>/images/*  root/<split>/labels/*.png     (e.g. train/ and val/)

With the first layout and no splits/ folder, everything is the split 'train'. Labels are
single-channel PNGs of class ids, or palette PNGs whose palette indices are the class ids; one
value (`ignore_value`) may mark unlabelled pixels. Every file is checked while the dataset is
built, and a bad one is an error naming it: nothing is skipped silently.

Images are read as stored, whatever their EXIF orientation, because their labels were drawn on the
stored pixels; an orientation other than 1 is logged as a warning naming the file. Any PIL mode
becomes RGB as `rgb_pixels` says, as `predict` does.
"""

import dataclasses
import hashlib
import os
import re

from absl import logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from deeplab_jax.data.datasets.errors import DataError, check_label_values
from deeplab_jax.data.datasets.features import segmentation_info

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')  # What PIL reads.
EXIF_ORIENTATION = 0x0112  # 1 is upright; 2 to 8 are the turns and mirrors a viewer applies.


def _files_by_stem(directory: str, suffixes: tuple[str, ...]) -> dict[str, str]:
  files = {}
  for name in sorted(os.listdir(directory)):
    stem, suffix = os.path.splitext(name)
    if suffix.lower() in suffixes:
      if stem in files:
        raise DataError(f'{directory}: two files with the stem {stem!r}: '
                          f'{os.path.basename(files[stem])} and {name}')
      files[stem] = os.path.join(directory, name)
  return files


def _pairs(images_dir: str, labels_dir: str) -> dict[str, tuple[str, str]]:
  """stem -> (image path, label path); an image without a label, or the reverse, is an error."""
  images = _files_by_stem(images_dir, IMAGE_SUFFIXES)
  labels = _files_by_stem(labels_dir, ('.png',))
  for missing, present, kind in ((labels, images, 'label'), (images, labels, 'image')):
    lonely = sorted(set(present) - set(missing))
    if lonely:
      raise DataError(f'{len(lonely)} file(s) without a matching {kind}, e.g. '
                        f'{present[lonely[0]]}')
  return {stem: (images[stem], labels[stem]) for stem in images}


def find_splits(root: str) -> dict[str, dict[str, tuple[str, str]]]:
  """split -> {stem: (image path, label path)} for either layout (see the module docstring)."""
  if os.path.isdir(os.path.join(root, 'images')):
    pairs = _pairs(os.path.join(root, 'images'), os.path.join(root, 'labels'))
    splits_dir = os.path.join(root, 'splits')
    if not os.path.isdir(splits_dir):
      return {'train': pairs}
    splits = {}
    for name in sorted(os.listdir(splits_dir)):
      if name.endswith('.txt'):
        path = os.path.join(splits_dir, name)
        with open(path) as file:
          stems = [line.strip() for line in file if line.strip()]
        unknown = [stem for stem in stems if stem not in pairs]
        if unknown:
          raise DataError(f'{path} lists {len(unknown)} stem(s) with no image, e.g. '
                            f'{unknown[0]!r}')
        splits[name.removesuffix('.txt')] = {stem: pairs[stem] for stem in stems}
    return splits
  splits = {name: _pairs(os.path.join(root, name, 'images'), os.path.join(root, name, 'labels'))
            for name in sorted(os.listdir(root))
            if os.path.isdir(os.path.join(root, name, 'images'))}
  if not splits:
    raise DataError(f'{root} holds neither images/ and labels/ nor <split>/images/ and '
                      '<split>/labels/ folders')
  return splits


def _open(path: str) -> Image.Image:
  try:
    image = Image.open(path)
    image.load()  # Decodes it all: a truncated file fails here.
    return image
  except (OSError, Image.DecompressionBombError) as error:
    raise DataError(f'{path}: unreadable image ({error})') from None


def rgb_pixels(image: Image.Image) -> np.ndarray:
  """uint8 [H, W, 3] RGB of a decoded image of any mode, as stored (its EXIF orientation unread).

  16-bit greyscale ('I;16', 'I') is scaled from 0..65535 to 0..255, not clipped; transparency
  (RGBA, LA, PA, a palette's or a tRNS transparent colour) is composited over white, as a viewer
  on a white page shows it, so hidden colours under alpha 0 never reach the model. CMYK, palette,
  greyscale and the other modes go through PIL's conversion.
  """
  if image.mode.startswith('I'):
    grey = np.clip((np.asarray(image, np.int64) * 255 + 32767) // 65535, 0, 255)
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
  if image.has_transparency_data:
    rgba = np.asarray(image.convert('RGBA'), np.uint32)
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
  return np.asarray(image.convert('RGB'))


def _warn_if_turned(image: Image.Image, path: str) -> None:
  """Logs a warning naming `path` when viewers show `image` turned or mirrored (EXIF)."""
  orientation = image.getexif().get(EXIF_ORIENTATION, 1)
  if orientation != 1:
    logging.warning('%s: EXIF orientation %s ignored: its pixels are read as stored, which its '
                    'label must match, though viewers show it turned or mirrored', path,
                    orientation)


def read_example(image_path: str, label_path: str, num_classes: int,
                 ignore_value: int) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 RGB image, uint8 [H, W, 1] label), checked; an error names the file at fault."""
  image_file = _open(image_path)
  _warn_if_turned(image_file, image_path)
  image = rgb_pixels(image_file)
  label_image = _open(label_path)
  if label_image.mode not in ('L', 'P'):
    raise DataError(f'{label_path}: labels must be single-channel or palette PNGs of class '
                      f'ids, this one is {label_image.mode}')
  label = np.asarray(label_image)
  if label.shape != image.shape[:2]:
    raise DataError(f'{label_path}: label is {label.shape[1]}x{label.shape[0]} but its image '
                      f'{image_path} is {image.shape[1]}x{image.shape[0]}')
  check_label_values(label, num_classes, ignore_value, label_path)
  return image, label[..., None]


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """One folder; the name carries a fingerprint of its files, so new data gets rebuilt."""
  root: str = ''
  num_classes: int = 0
  ignore_value: int = 255

  @classmethod
  def create(cls, root: str, num_classes: int, ignore_value: int) -> 'FolderConfig':
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
      raise DataError(f'config.folder.root: {root} is not a directory')
    digest = hashlib.sha256(f'{root}|{num_classes}|{ignore_value}'.encode())
    for directory, subdirs, files in os.walk(root):
      subdirs.sort()
      for name in sorted(files):
        stat = os.stat(os.path.join(directory, name))
        digest.update(f'{directory}/{name}|{stat.st_size}|{stat.st_mtime_ns}'.encode())
    base = re.sub(r'[^a-z0-9_]', '_', os.path.basename(root).lower()) or 'folder'
    return cls(name=f'{base}_{digest.hexdigest()[:12]}', root=root, num_classes=num_classes,
               ignore_value=ignore_value, description=f'Images and labels from {root}.')


class SegmentationFolder(tfds.core.GeneratorBasedBuilder):
  """A folder of images and label PNGs (built with a `FolderConfig`)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return segmentation_info(self, __doc__, 'png')  # PNG keeps the decoded pixels exactly.

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # The files are on this machine.
    return {name: self._generate_examples(pairs)
            for name, pairs in find_splits(self.builder_config.root).items()}

  def _generate_examples(self, pairs: dict[str, tuple[str, str]]):
    config = self.builder_config
    for stem, (image_path, label_path) in pairs.items():
      image, label = read_example(image_path, label_path, config.num_classes,
                                  config.ignore_value)
      yield stem, {'image': image, 'segmentation_mask': label,
                   'file_name': os.path.relpath(image_path, config.root)}
