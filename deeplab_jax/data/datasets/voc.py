"""PASCAL VOC 2012 segmentation, plus SBD for `train_aug`: the TFDS builder `voc2012_segmentation`.

Splits: VOC's `train` (1,464 images), `validation` (1,449) and `trainval`, and `train_aug`
(10,582), the training set of the DeepLab papers: VOC train plus SBD's train and val, less
every image of VOC val. An image of train_aug keeps VOC's annotation where VOC has one, else
takes SBD's. Labels are class ids 0..20, and 255 on VOC's "void" band around objects. Images
are stored as the original JPEG bytes. Every label is checked against its image while the
dataset is built; a bad one is an error naming the file.
"""

from etils import epath
import numpy as np
from PIL import Image
import scipy.io
import tensorflow_datasets as tfds

from deeplab_jax.data.datasets import downloads
from deeplab_jax.data.datasets.errors import DataError, check_label_values
from deeplab_jax.data.datasets.features import segmentation_info

CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
    'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
    'train', 'tvmonitor')
IGNORE_VALUE = 255
VOC_ARCHIVE = 'VOCtrainval_11-May-2012.tar'
SBD_ARCHIVE = 'benchmark.tgz'
URLS = {
    VOC_ARCHIVE: 'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar',
    SBD_ARCHIVE: ('http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/'
                  'semantic_contours/benchmark.tgz'),
}

HOW_TO_GET = (
    f'PASCAL VOC 2012 segmentation is built from two archives: {VOC_ARCHIVE} '
    f'({URLS[VOC_ARCHIVE]}) and SBD\'s {SBD_ARCHIVE} ({URLS[SBD_ARCHIVE]}), which adds the '
    'train_aug images. They are downloaded when this machine can reach those addresses; '
    'otherwise download both files elsewhere and put them, as they are, in the manual dir: '
    '--config.manual_dir (default <data_dir>/downloads/manual).')

# (file name, image path, label path): a VOC palette PNG or an SBD .mat label.
Example = tuple[str, epath.Path, epath.Path]


def _read_stems(path: epath.Path) -> list[str]:
  return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def split_examples(voc: epath.Path, sbd: epath.Path) -> dict[str, list[Example]]:
  """Split name -> its examples, from the extracted VOC2012 and SBD dataset folders."""
  voc_stems = {split: _read_stems(voc / 'ImageSets' / 'Segmentation' / f'{split}.txt')
               for split in ('train', 'val', 'trainval')}

  def voc_example(stem: str) -> Example:
    return stem, voc / 'JPEGImages' / f'{stem}.jpg', voc / 'SegmentationClass' / f'{stem}.png'

  def sbd_example(stem: str) -> Example:
    image = voc / 'JPEGImages' / f'{stem}.jpg'
    if not image.exists():
      image = sbd / 'img' / f'{stem}.jpg'
    return stem, image, sbd / 'cls' / f'{stem}.mat'

  sbd_stems = dict.fromkeys(_read_stems(sbd / 'train.txt') + _read_stems(sbd / 'val.txt'))
  # VOC train keeps VOC's annotation; VOC val must stay unseen.
  taken = set(voc_stems['train']) | set(voc_stems['val'])
  return {
      'train': [voc_example(stem) for stem in voc_stems['train']],
      'validation': [voc_example(stem) for stem in voc_stems['val']],
      'trainval': [voc_example(stem) for stem in voc_stems['trainval']],
      'train_aug': ([voc_example(stem) for stem in voc_stems['train']] +
                    [sbd_example(stem) for stem in sbd_stems if stem not in taken]),
  }


def read_label(path: epath.Path) -> np.ndarray:
  """The [H, W] class ids of a VOC palette PNG (its palette indices) or an SBD .mat file."""
  with path.open('rb') as file:
    if path.suffix == '.mat':
      mat = scipy.io.loadmat(file, squeeze_me=True, struct_as_record=False)
      return np.asarray(mat['GTcls'].Segmentation)
    image = Image.open(file)
    if image.mode not in ('P', 'L'):
      raise DataError(f'{path}: labels must be palette or single-channel PNGs of class ids, '
                      f'this one is {image.mode}')
    return np.asarray(image)


def checked_label(image_path: epath.Path, label_path: epath.Path) -> np.ndarray:
  """The uint8 [H, W, 1] label of an image, after checking its size and values."""
  label = read_label(label_path)
  with image_path.open('rb') as file:
    width, height = Image.open(file).size  # Reads the header only.
  if label.shape != (height, width):
    raise DataError(f'{label_path}: label is {label.shape} but its image {image_path} is '
                    f'{(height, width)}')
  check_label_values(label, len(CLASS_NAMES), IGNORE_VALUE, label_path)
  return label.astype(np.uint8)[..., None]


class Voc2012Segmentation(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 segmentation and its SBD-augmented training set."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

  def _info(self) -> tfds.core.DatasetInfo:
    return segmentation_info(self, __doc__, 'jpeg',
                             'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    extracted = downloads.extract_or_download(dl_manager, URLS)
    splits = split_examples(extracted[VOC_ARCHIVE] / 'VOCdevkit' / 'VOC2012',
                            extracted[SBD_ARCHIVE] / 'benchmark_RELEASE' / 'dataset')
    return {name: self._generate_examples(examples) for name, examples in splits.items()}

  def _generate_examples(self, examples: list[Example]):
    for stem, image_path, label_path in examples:
      yield stem, {'image': image_path,  # The JPEG's bytes, stored as they are.
                   'segmentation_mask': checked_label(image_path, label_path),
                   'file_name': stem}
