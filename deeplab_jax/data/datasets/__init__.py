"""The dataset registry: name -> TFDS builder, classes, ignore value and colour palette.

Importing this package registers the TFDS builders that ship with deeplab_jax.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from deeplab_jax.data.datasets import shapes


class DatasetUnavailableError(RuntimeError):
  """The dataset's files are not on this machine (and cannot be downloaded)."""


def pascal_palette(num_colours: int = 256) -> np.ndarray:
  """PASCAL VOC's colour map: the bits of the class id interleaved over R, G and B."""
  palette = np.zeros((num_colours, 3), np.uint8)
  for index in range(num_colours):
    value = index
    for shift in range(7, -1, -1):
      for channel in range(3):
        palette[index, channel] |= ((value >> channel) & 1) << shift
      value >>= 3
  return palette


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the library needs to know of a dataset whose labels are class ids 0..C-1 or 255."""
  name: str
  tfds_name: str
  class_names: tuple[str, ...]
  palette: np.ndarray  # [num_classes, 3] uint8 colours.
  how_to_get: str  # Shown when the data is missing.
  image_key: str = 'image'
  label_key: str = 'segmentation_mask'

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


VOC_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
    'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
    'train', 'tvmonitor')

DATASETS = {
    'shapes': DatasetInfo(
        name='shapes', tfds_name='shapes', class_names=shapes.CLASS_NAMES,
        palette=np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200)], np.uint8),
        how_to_get='It is generated on this machine; nothing to fetch.'),
    'voc2012': DatasetInfo(
        name='voc2012', tfds_name='voc2012_segmentation', class_names=VOC_CLASSES,
        palette=pascal_palette(len(VOC_CLASSES)),
        how_to_get=(
            'PASCAL VOC 2012 segmentation needs the archive VOCtrainval_11-May-2012.tar from '
            'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (and benchmark.tgz from '
            'http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/'
            ' for the train_aug split). This version of deeplab_jax does not ship the '
            'voc2012_segmentation TFDS builder that reads them yet; until it does, train on the '
            'embedded dataset with --config=configs/shapes.py.')),
}


def get(name: str) -> DatasetInfo:
  """The registry entry of dataset `name`; the error lists the known names."""
  if name not in DATASETS:
    raise KeyError(f'config.dataset: unknown dataset {name!r}; known: {sorted(DATASETS)}')
  return DATASETS[name]


def prepare_builder(info: DatasetInfo, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The dataset's TFDS builder, built (generated or downloaded) if it is not yet."""
  try:
    builder = tfds.builder(info.tfds_name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise DatasetUnavailableError(
        f'Dataset {info.name!r} (TFDS {info.tfds_name!r}) is not available. '
        f'{info.how_to_get}') from error
  if not builder.is_prepared():
    try:
      builder.download_and_prepare()
    except Exception as error:
      raise DatasetUnavailableError(
          f'Could not prepare dataset {info.name!r} in {builder.data_dir}: {error}\n'
          f'{info.how_to_get}') from error
  return builder
