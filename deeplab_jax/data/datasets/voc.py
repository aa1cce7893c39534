"""PASCAL VOC 2012 segmentation, plus SBD for `train_aug`: the TFDS builder `voc2012_segmentation`.

Splits: VOC's `train` (1,464 images), `validation` (1,449) and `trainval`, and `train_aug`
(10,582), the training set of the DeepLab papers: VOC train plus SBD's train and val, less
every image of VOC val. An image of train_aug keeps VOC's annotation where VOC has one, else
takes SBD's. Labels are class ids 0..20, and 255 on VOC's "void" band around objects. Images
are stored as the original JPEG bytes. Every label is checked against its image while the
dataset is built; a bad one is an error naming the file.

Each builder config needs only its own archives, so that no split waits for one it never reads:
`voc` (train, validation, trainval) the VOC archive; `voc_sbd` (those and train_aug) SBD too;
`test` (VOC's 1,456 unlabelled test images, every pixel void) the evaluation server's
VOC2012test.tar. `builder_config` picks the config that holds the splits a run asks for.
"""

from collections.abc import Collection

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
TEST_ARCHIVE = 'VOC2012test.tar'
URLS = {
    VOC_ARCHIVE: 'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar',
    SBD_ARCHIVE: ('http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/'
                  'semantic_contours/benchmark.tgz'),
    # Behind the evaluation server's login: never downloaded, only read from the manual dir.
    TEST_ARCHIVE: 'http://host.robots.ox.ac.uk:8080/',
}
# Builder config -> (its archives, its splits).
CONFIGS = {
    'voc': ((VOC_ARCHIVE,), ('train', 'validation', 'trainval')),
    'voc_sbd': ((VOC_ARCHIVE, SBD_ARCHIVE), ('train', 'validation', 'trainval', 'train_aug')),
    'test': ((TEST_ARCHIVE,), ('test',)),
}

HOW_TO_GET = (
    f'PASCAL VOC 2012 segmentation is built from {VOC_ARCHIVE} ({URLS[VOC_ARCHIVE]}); '
    f'train_aug also needs SBD\'s {SBD_ARCHIVE} ({URLS[SBD_ARCHIVE]}), and the test split '
    f'{TEST_ARCHIVE} from the evaluation server ({URLS[TEST_ARCHIVE]}, after signing in). The '
    'first two are downloaded when this machine can reach those addresses; otherwise download '
    'them elsewhere and put them, as they are, in the manual dir: --config.manual_dir (default '
    '<data_dir>/downloads/manual).')


def builder_config(splits: Collection[str]) -> str:
  """The builder config holding every split of `splits`: the one needing the fewest archives."""
  for name, (_, config_splits) in CONFIGS.items():
    if set(splits) <= set(config_splits):
      return name
  raise ValueError(f'VOC 2012 has no builder config holding all of {sorted(splits)}: the test '
                   'split is built alone, from its own archive; the others are '
                   f'{list(CONFIGS["voc_sbd"][1])}')

# (file name, image path, label path): a VOC palette PNG, an SBD .mat label, or None (test).
Example = tuple[str, epath.Path, epath.Path | None]


def _read_stems(path: epath.Path) -> list[str]:
  return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def split_examples(voc: epath.Path, sbd: epath.Path | None) -> dict[str, list[Example]]:
  """Split name -> its examples, from the extracted VOC2012 and (for train_aug) SBD dataset
  folders."""
  voc_stems = {split: _read_stems(voc / 'ImageSets' / 'Segmentation' / f'{split}.txt')
               for split in ('train', 'val', 'trainval')}

  def voc_example(stem: str) -> Example:
    return stem, voc / 'JPEGImages' / f'{stem}.jpg', voc / 'SegmentationClass' / f'{stem}.png'

  def sbd_example(stem: str) -> Example:
    image = voc / 'JPEGImages' / f'{stem}.jpg'
    if not image.exists():
      image = sbd / 'img' / f'{stem}.jpg'
    return stem, image, sbd / 'cls' / f'{stem}.mat'

  splits = {
      'train': [voc_example(stem) for stem in voc_stems['train']],
      'validation': [voc_example(stem) for stem in voc_stems['val']],
      'trainval': [voc_example(stem) for stem in voc_stems['trainval']],
  }
  if sbd is None:
    return splits
  sbd_stems = dict.fromkeys(_read_stems(sbd / 'train.txt') + _read_stems(sbd / 'val.txt'))
  # VOC train keeps VOC's annotation; VOC val must stay unseen.
  taken = set(voc_stems['train']) | set(voc_stems['val'])
  splits['train_aug'] = ([voc_example(stem) for stem in voc_stems['train']] +
                         [sbd_example(stem) for stem in sbd_stems if stem not in taken])
  return splits


def test_examples(voc: epath.Path) -> list[Example]:
  """The test split's examples, from the extracted VOC2012test folder: no labels."""
  return [(stem, voc / 'JPEGImages' / f'{stem}.jpg', None)
          for stem in _read_stems(voc / 'ImageSets' / 'Segmentation' / 'test.txt')]


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


def checked_label(image_path: epath.Path, label_path: epath.Path | None) -> np.ndarray:
  """The uint8 [H, W, 1] label of an image, after checking its size and values; all void
  without a `label_path`."""
  with image_path.open('rb') as file:
    width, height = Image.open(file).size  # Reads the header only.
  if label_path is None:
    return np.full((height, width, 1), IGNORE_VALUE, np.uint8)
  label = read_label(label_path)
  if label.shape != (height, width):
    raise DataError(f'{label_path}: label is {label.shape} but its image {image_path} is '
                    f'{(height, width)}')
  check_label_values(label, len(CLASS_NAMES), IGNORE_VALUE, label_path)
  return label.astype(np.uint8)[..., None]


class Voc2012Segmentation(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 segmentation, its SBD-augmented training set and its test images."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.',
                   '2.0.0': 'Builder configs: VOC alone, VOC with SBD, and the test images.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name=name, description=f'{", ".join(splits)}: from '
                              f'{" and ".join(archives)}')
      for name, (archives, splits) in CONFIGS.items()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

  def _info(self) -> tfds.core.DatasetInfo:
    return segmentation_info(self, __doc__, 'jpeg',
                             'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    archives, _ = CONFIGS[self.builder_config.name]
    extracted = downloads.extract_or_download(
        dl_manager, {name: URLS[name] for name in archives}, manual_only=(TEST_ARCHIVE,))
    if TEST_ARCHIVE in extracted:
      splits = {'test': test_examples(extracted[TEST_ARCHIVE] / 'VOCdevkit' / 'VOC2012')}
    else:
      sbd = extracted.get(SBD_ARCHIVE)
      splits = split_examples(extracted[VOC_ARCHIVE] / 'VOCdevkit' / 'VOC2012',
                              sbd and sbd / 'benchmark_RELEASE' / 'dataset')
    return {name: self._generate_examples(examples) for name, examples in splits.items()}

  def _generate_examples(self, examples: list[Example]):
    for stem, image_path, label_path in examples:
      yield stem, {'image': image_path,  # The JPEG's bytes, stored as they are.
                   'segmentation_mask': checked_label(image_path, label_path),
                   'file_name': stem}
