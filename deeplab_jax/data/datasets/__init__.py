"""The dataset registry: name -> TFDS builder, splits, classes, palette and label mapping.

Labels inside the library are class ids 0..C-1 plus the ignore value. Each dataset's own
encoding is mapped once, at the input pipeline's edge, by its `label_map`. Importing this
package registers the TFDS builders that ship with deeplab_jax.
"""

from collections.abc import Callable, Collection
import dataclasses
from typing import Any

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax.config_error import ConfigError
from deeplab_jax.data.datasets import ade20k
from deeplab_jax.data.datasets import cityscapes
from deeplab_jax.data.datasets import folder
from deeplab_jax.data.datasets import palettes
from deeplab_jax.data.datasets import shapes
from deeplab_jax.data.datasets import voc
from deeplab_jax.data.datasets.errors import DataError


class DatasetUnavailableError(RuntimeError):
  """The dataset's files are not on this machine (and cannot be downloaded)."""


LabelMap = Callable[[tf.Tensor, int], tf.Tensor]


def lookup_label_map(table: dict[int, int]) -> LabelMap:
  """A label map sending each stored value v to table.get(v, ignore_label)."""
  def label_map(label: tf.Tensor, ignore_label: int) -> tf.Tensor:
    values = np.full(256, ignore_label, np.int32)
    for stored, class_id in table.items():
      values[stored] = class_id
    return tf.gather(tf.constant(values), label)
  return label_map


def ignore_value_label_map(ignore_value: int) -> LabelMap:
  """A label map that only turns the dataset's own ignore value into ours."""
  return lambda label, ignore_label: tf.where(label == ignore_value, ignore_label, label)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the library needs to know of a dataset, and how to read its TFDS examples."""
  name: str
  tfds_name: str
  class_names: tuple[str, ...]
  palette: np.ndarray  # [num_classes, 3] uint8 colours.
  how_to_get: str  # Shown when the data is missing.
  image_key: str = 'image'
  label_key: str = 'segmentation_mask'
  name_key: str = 'file_name'  # Names an example in error messages.
  label_map: LabelMap | None = None  # Stored label values -> class ids / ignore.
  builder_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  # The TFDS builder config holding the splits a run reads, where configs hold different splits.
  builder_config: Callable[[Collection[str]], str] | None = None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


DATASETS = {
    'shapes': DatasetInfo(
        name='shapes', tfds_name='shapes', class_names=shapes.CLASS_NAMES,
        palette=np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200)], np.uint8),
        how_to_get='It is generated on this machine; nothing to fetch.'),
    'voc2012': DatasetInfo(
        name='voc2012', tfds_name='voc2012_segmentation', class_names=voc.CLASS_NAMES,
        palette=palettes.pascal(len(voc.CLASS_NAMES)), how_to_get=voc.HOW_TO_GET,
        builder_config=voc.builder_config),
    'cityscapes': DatasetInfo(
        name='cityscapes', tfds_name='cityscapes/semantic_segmentation',
        class_names=cityscapes.CLASS_NAMES, palette=cityscapes.PALETTE,
        how_to_get=cityscapes.HOW_TO_GET, image_key='image_left',
        label_key='segmentation_label', name_key='image_id',
        label_map=lookup_label_map(cityscapes.TRAIN_IDS)),
    'ade20k': DatasetInfo(
        name='ade20k', tfds_name='ade20k_segmentation', class_names=ade20k.CLASS_NAMES,
        palette=ade20k.PALETTE, how_to_get=ade20k.HOW_TO_GET,
        # 0 is "other objects", not scored; 1..150 are the classes.
        label_map=lookup_label_map({v: v - 1 for v in range(1, 256)})),
}


def folder_info(spec: ml_collections.ConfigDict) -> DatasetInfo:
  """The registry entry of the image folder `spec` (a recipe's `folder` section) describes."""
  if not spec.root:
    raise ConfigError('folder.root', spec.root, "the 'folder' dataset needs the folder holding "
                      'images/ and labels/ (or one such pair per split)', '/path/to/your/data')
  class_names = tuple(spec.class_names) or tuple(
      f'class_{index}' for index in range(spec.num_classes))
  if not class_names or spec.num_classes not in (0, len(class_names)):
    raise ConfigError('folder.num_classes', spec.num_classes,
                      'name the classes (folder.class_names) or count them (folder.num_classes); '
                      f'got class_names={tuple(spec.class_names)}', max(2, len(class_names)))
  builder_config = folder.FolderConfig.create(spec.root, len(class_names), spec.ignore_value)
  return DatasetInfo(
      name='folder', tfds_name='segmentation_folder', class_names=class_names,
      palette=(np.asarray(spec.palette, np.uint8) if spec.palette else
               palettes.pascal(len(class_names))),
      how_to_get=f'It is read from {spec.root}.',
      label_map=ignore_value_label_map(spec.ignore_value),
      builder_kwargs={'config': builder_config})


def get(name: str, folder_spec: ml_collections.ConfigDict | None = None) -> DatasetInfo:
  """The registry entry of dataset `name`; 'folder' is described by `folder_spec` (a recipe's
  `folder` section)."""
  if name == 'folder':
    return folder_info(folder_spec)
  if name not in DATASETS:
    raise ConfigError('dataset', name, f"unknown; known: {sorted(DATASETS) + ['folder']}",
                      'shapes')
  return DATASETS[name]


def prepare_builder(info: DatasetInfo, data_dir: str | None, manual_dir: str | None = None,
                    splits: Collection[str] = ()) -> tfds.core.DatasetBuilder:
  """The TFDS builder of the dataset's `splits` (those a run reads), built (generated,
  downloaded or read from `manual_dir`)."""
  kwargs = dict(info.builder_kwargs)
  if info.builder_config:
    try:
      kwargs['config'] = info.builder_config(splits)
    except ValueError as error:
      raise DatasetUnavailableError(f'Dataset {info.name!r}: {error}') from None
  try:
    builder = tfds.builder(info.tfds_name, data_dir=data_dir, **kwargs)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise DatasetUnavailableError(
        f'Dataset {info.name!r} (TFDS {info.tfds_name!r}) is not available. '
        f'{info.how_to_get}') from error
  if not builder.is_prepared():
    try:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except DataError:  # A bad file, named in the message: not a matter of getting the data.
      raise
    except Exception as error:  # Download, missing archive or unreadable file: say what to do.
      raise DatasetUnavailableError(
          f'Could not prepare dataset {info.name!r} in {builder.data_dir}: {error}\n'
          f'{info.how_to_get}') from error
  return builder


def prepare_dataset(config: ml_collections.ConfigDict, splits: Collection[str] | None = None
                    ) -> tuple[DatasetInfo, tfds.core.DatasetBuilder]:
  """(the config's dataset's info, its TFDS builder of `splits`, by default the train and eval
  splits), built in `config.data_dir` if it is not yet."""
  info = get(config.dataset, config.folder)
  splits = (config.train_split, config.eval_split) if splits is None else splits
  return info, prepare_builder(info, config.data_dir, config.manual_dir, splits)
