"""Cityscapes (TFDS's builder) and ADE20K (ours), built from tiny fake archives in the real layouts.

Each check decodes labels through the registry's label map and compares them with expectations
written here from the datasets' own definitions, not from deeplab_jax's tables.
"""

import io
import os
import pathlib
import zipfile

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import load_config
from deeplab_jax import checkpointing
from deeplab_jax import inference
from deeplab_jax import predict
from deeplab_jax.config_error import ConfigError
from deeplab_jax.data import datasets
from deeplab_jax.data import input_pipeline
from deeplab_jax.data.datasets import downloads

# trainId of each labelId 0..33, from cityscapesScripts' labels.py (255: not trained on). The
# license plate (id -1) is never drawn into the labelIds PNGs, so they hold only 0..33.
CITYSCAPES_TRAIN_ID_OF_LABEL_ID = (
    255, 255, 255, 255,  # unlabeled, ego vehicle, rectification border, out of roi
    255, 255, 255,  # static, dynamic, ground
    0, 1, 255, 255,  # road, sidewalk, parking, rail track
    2, 3, 4,  # building, wall, fence
    255, 255, 255,  # guard rail, bridge, tunnel
    5, 255, 6, 7,  # pole, polegroup, traffic light, traffic sign
    8, 9, 10,  # vegetation, terrain, sky
    11, 12, 13, 14, 15,  # person, rider, car, truck, bus
    255, 255,  # caravan, trailer
    16, 17, 18)  # train, motorcycle, bicycle
CITYSCAPES_SIZE = (1024, 2048)  # TFDS's features fix this shape; reading other sizes fails.
# One image per split, named as in the real archives (the builder wants <city>_<seq>_<frame>).
CITYSCAPES_IDS = {'train': 'aachen_000000_000019', 'val': 'frankfurt_000000_000294',
                  'test': 'berlin_000000_000019'}
CITYSCAPES_TFDS_SPLITS = {'train': 'train', 'val': 'validation', 'test': 'test'}


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
  table = np.full(256, 255)
  table[:34] = CITYSCAPES_TRAIN_ID_OF_LABEL_ID
  return table[label_ids]


def png_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


def jpeg_bytes(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def cityscapes_label_ids(split: str) -> np.ndarray:
  """Vertical bands of every labelId 0..33 and an out-of-table 255; each split in its order."""
  values = np.array([*range(34), 255], np.uint8)
  if split != 'train':
    values = values[::-1]
  columns = np.arange(CITYSCAPES_SIZE[1]) * len(values) // CITYSCAPES_SIZE[1]
  return np.broadcast_to(values[columns], CITYSCAPES_SIZE).copy()


def cityscapes_image(split: str) -> np.ndarray:
  """Flat-coloured bands (cheap as PNG) that differ from split to split."""
  bands = cityscapes_label_ids(split)
  return np.stack([bands, 255 - bands, np.full_like(bands, 90)], axis=-1)


@pytest.fixture(scope='module')
def cityscapes_builder(tmp_path_factory):
  manual_dir = tmp_path_factory.mktemp('cityscapes_manual')
  with zipfile.ZipFile(manual_dir / 'leftImg8bit_trainvaltest.zip', 'w') as images, \
       zipfile.ZipFile(manual_dir / 'gtFine_trainvaltest.zip', 'w') as labels:
    for split, image_id in CITYSCAPES_IDS.items():
      city = image_id.split('_')[0]
      images.writestr(f'leftImg8bit/{split}/{city}/{image_id}_leftImg8bit.png',
                      png_bytes(cityscapes_image(split)))
      labels.writestr(f'gtFine/{split}/{city}/{image_id}_gtFine_labelIds.png',
                      png_bytes(cityscapes_label_ids(split)))
  data_dir = tmp_path_factory.mktemp('cityscapes_tfds')
  return datasets.prepare_builder(datasets.get('cityscapes'), str(data_dir), str(manual_dir))


@pytest.mark.parametrize('split', CITYSCAPES_IDS)
def test_cityscapes_label_ids_become_train_ids(cityscapes_builder, split):
  info = datasets.get('cityscapes')
  ds = cityscapes_builder.as_dataset(CITYSCAPES_TFDS_SPLITS[split])
  (example,) = list(tfds.as_numpy(ds))
  assert example[info.name_key].decode() == CITYSCAPES_IDS[split]
  np.testing.assert_array_equal(example[info.image_key], cityscapes_image(split))
  stored = example[info.label_key]
  label_ids = cityscapes_label_ids(split)
  np.testing.assert_array_equal(stored[..., 0], label_ids)

  train_ids = info.label_map(tf.constant(stored, tf.int32), 255).numpy()[..., 0]
  np.testing.assert_array_equal(train_ids, cityscapes_train_ids(label_ids))
  assert set(np.unique(train_ids)) == {*range(19), 255}


def test_cityscapes_classes_and_palette():
  info = datasets.get('cityscapes')
  assert info.num_classes == 19 == len(set(info.class_names))
  assert info.palette.shape == (19, 3) and info.palette.dtype == np.uint8
  assert info.class_names[0] == 'road' and info.class_names[-1] == 'bicycle'


def test_cityscapes_config_evaluates_whole_images(cityscapes_builder):
  config = load_config('cityscapes')
  config.eval_batch_size = 4
  ds, num_batches = input_pipeline.create_eval_dataset(
      config, datasets.get(config.dataset), cityscapes_builder, process_index=0,
      process_count=1)
  (batch,) = list(input_pipeline.as_numpy(ds))
  assert num_batches == 1 and batch['image'].shape == (4, 1025, 2049, 3)
  np.testing.assert_array_equal(batch['mask'], [True, False, False, False])
  label = batch['label'][0]
  np.testing.assert_array_equal(label[:1024, :2048],
                                cityscapes_train_ids(cityscapes_label_ids('val')))
  assert (label[1024] == 255).all() and (label[:, 2048] == 255).all()  # Padding is ignored.


# The fake ADE20K: (image or raw bytes, label) per '<training|validation>/<stem>'.
AdeFiles = dict[str, tuple[Image.Image | bytes, np.ndarray]]


def ade_label(height: int, width: int, values: list[int]) -> np.ndarray:
  """Horizontal bands of `values`."""
  rows = np.arange(height) * len(values) // height
  return np.broadcast_to(np.array(values, np.uint8)[rows, None], (height, width)).copy()


def ade_files() -> AdeFiles:
  """Flat colours, which JPEG keeps close; grayscale and CMYK too, as a few real images are."""
  return {
      'training/ADE_train_00000001': (Image.new('RGB', (32, 24), (200, 40, 90)),
                                      ade_label(24, 32, [0, 1, 75, 150])),
      'training/ADE_train_00000002': (Image.new('L', (16, 20), 120),
                                      ade_label(20, 16, [150, 0, 2])),
      'training/ADE_train_00000003': (Image.new('CMYK', (20, 12), (10, 200, 30, 20)),
                                      ade_label(12, 20, [3, 0])),
      'validation/ADE_val_00000001': (Image.new('RGB', (24, 16), (30, 160, 220)),
                                      ade_label(16, 24, [7, 0, 150, 149])),
  }


def write_ade_zip(directory: pathlib.Path, files: AdeFiles, *,
                  drop_labels: tuple[str, ...] = ()) -> pathlib.Path:
  """ADEChallengeData2016.zip holding `files`, less the labels of `drop_labels`."""
  path = directory / 'ADEChallengeData2016.zip'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('ADEChallengeData2016/objectInfo150.txt', 'Idx\tRatio\tTrain\tVal\tName\n')
    for key, (image, label) in files.items():
      folder, stem = key.split('/')
      archive.writestr(f'ADEChallengeData2016/images/{folder}/{stem}.jpg',
                       jpeg_bytes(image) if isinstance(image, Image.Image) else image)
      if key not in drop_labels:
        archive.writestr(f'ADEChallengeData2016/annotations/{folder}/{stem}.png',
                         png_bytes(label))
  return path


def prepare_ade(tmp_path: pathlib.Path, files: AdeFiles, **kwargs) -> tfds.core.DatasetBuilder:
  manual_dir = tmp_path / 'manual'
  manual_dir.mkdir()
  write_ade_zip(manual_dir, files, **kwargs)
  return datasets.prepare_builder(datasets.get('ade20k'), str(tmp_path / 'tfds'),
                                  str(manual_dir))


@pytest.fixture(scope='module')
def ade20k_builder(tmp_path_factory):
  return prepare_ade(tmp_path_factory.mktemp('ade20k'), ade_files())


def test_ade20k_splits_images_and_labels(ade20k_builder):
  info = datasets.get('ade20k')
  files = ade_files()
  assert ade20k_builder.info.splits['train'].num_examples == 3
  assert ade20k_builder.info.splits['validation'].num_examples == 1
  for split, folder in (('train', 'training'), ('validation', 'validation')):
    for example in tfds.as_numpy(ade20k_builder.as_dataset(split)):
      image, label = files[f'{folder}/{example[info.name_key].decode()}']
      want_image = np.asarray(image.convert('RGB'), np.float32)
      assert example[info.image_key].shape == want_image.shape  # Always 3 channels.
      assert np.abs(example[info.image_key] - want_image).mean() < 3  # JPEG is lossy.
      stored = example[info.label_key]
      np.testing.assert_array_equal(stored[..., 0], label)  # Stored as the archive has it.

      class_ids = info.label_map(tf.constant(stored, tf.int32), 255).numpy()[..., 0]
      np.testing.assert_array_equal(class_ids, np.where(label == 0, 255, label.astype(int) - 1))


def test_ade20k_classes_and_palette():
  info = datasets.get('ade20k')
  assert info.num_classes == 150 == len(set(info.class_names))
  assert info.class_names[:5] == ('wall', 'building', 'sky', 'floor', 'tree')
  assert info.class_names[-3:] == ('glass', 'clock', 'flag')
  assert info.palette.shape == (150, 3) and info.palette.dtype == np.uint8
  np.testing.assert_array_equal(info.palette[:4], [(120, 120, 120), (180, 120, 120),
                                                   (6, 230, 230), (80, 50, 50)])
  np.testing.assert_array_equal(info.palette[-1], (92, 0, 255))


@pytest.mark.parametrize('name', ['cityscapes', 'ade20k'])
def test_config_fits_its_dataset(name, request):
  config = load_config(name)
  builder = request.getfixturevalue(f'{name}_builder')
  assert config.dataset == name
  assert config.model.num_classes == datasets.get(name).num_classes
  assert {config.train_split, config.eval_split} <= set(builder.info.splits)
  for size in (*config.crop_size, *(config.eval_crop_size or ())):  # None: sized to the split.
    assert size % config.model.output_stride == 1  # k * output stride + 1.


def test_ade20k_label_value_above_150_is_named(tmp_path):
  files = ade_files()
  image, label = files['training/ADE_train_00000002']
  files['training/ADE_train_00000002'] = image, np.where(label == 2, 151, label)
  with pytest.raises(datasets.DataError,
                     match=r'ADE_train_00000002\.png holds the value 151'):
    prepare_ade(tmp_path, files)


def test_ade20k_image_without_label_is_named(tmp_path):
  with pytest.raises(datasets.DataError,
                     match=r'ADE_val_00000001\.jpg has no label'):
    prepare_ade(tmp_path, ade_files(), drop_labels=('validation/ADE_val_00000001',))


def test_ade20k_label_of_another_size_is_named(tmp_path):
  files = ade_files()
  image, label = files['training/ADE_train_00000001']
  files['training/ADE_train_00000001'] = image, label[:-1]
  with pytest.raises(datasets.DataError,
                     match=r'ADE_train_00000001\.png is 23x32 but its image is 24x32'):
    prepare_ade(tmp_path, files)


def test_ade20k_unreadable_image_is_named(tmp_path):
  files = ade_files()
  files['training/ADE_train_00000003'] = b'not a jpeg', files['training/ADE_train_00000003'][1]
  with pytest.raises(datasets.DataError,
                     match=r'ADE_train_00000003\.jpg cannot be read'):
    prepare_ade(tmp_path, files)


def test_ade20k_is_downloaded_without_the_archive_in_the_manual_dir(tmp_path, monkeypatch):
  archive = write_ade_zip(tmp_path, ade_files())
  urls = []

  def download_and_extract(dl_manager, url):
    urls.append(url)
    return dl_manager.extract(archive)

  monkeypatch.setattr(downloads, 'check_reachable', lambda url: None)
  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract',
                      download_and_extract)
  builder = datasets.prepare_builder(datasets.get('ade20k'), str(tmp_path / 'tfds'),
                                     str(tmp_path / 'empty_manual_dir'))
  assert urls == ['http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip']
  assert builder.info.splits['train'].num_examples == 3


def test_an_unreachable_host_fails_at_once():
  with pytest.raises(ConnectionError, match='cannot reach no-such-host.invalid'):
    downloads.check_reachable('http://no-such-host.invalid/archive.zip', timeout=5)


def column_bands(variables, images, sizes):
  """A stand-in for a model: train id (column // 8) % 19, so every train id is predicted."""
  del variables, sizes
  columns = jnp.arange(images.shape[2]) // 8 % 19
  return jnp.broadcast_to(columns, images.shape[:3]).astype(jnp.int32), None


def test_cityscapes_submission_holds_label_ids_named_after_each_image(
    cityscapes_builder, tmp_path, monkeypatch):
  config = load_config('cityscapes')
  config.data_dir = str(cityscapes_builder.data_dir_root)
  monkeypatch.setattr(checkpointing, 'restore_model', lambda *args: (None, None, 0))
  monkeypatch.setattr(inference, 'make_predict_fn', lambda model, config: column_bands)
  assert predict.predict_split(config, None, 'test', str(tmp_path),
                               output_format='cityscapes') == 1
  assert sorted(os.listdir(tmp_path)) == [f'{CITYSCAPES_IDS["test"]}_leftImg8bit.png']
  with Image.open(tmp_path / f'{CITYSCAPES_IDS["test"]}_leftImg8bit.png') as png:
    assert png.mode == 'L' and png.size == CITYSCAPES_SIZE[::-1]
    label_ids = np.asarray(png)
  train_ids = np.asarray(CITYSCAPES_TRAIN_ID_OF_LABEL_ID)[label_ids]  # Back, by the table.
  want = np.broadcast_to(np.arange(CITYSCAPES_SIZE[1]) // 8 % 19, CITYSCAPES_SIZE)
  np.testing.assert_array_equal(train_ids, want)
  assert sorted(np.unique(label_ids)) == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26,
                                          27, 28, 31, 32, 33]


def test_a_submission_format_needs_its_dataset(tmp_path):
  config = load_config('ade20k')
  with pytest.raises(ConfigError, match=r"config.dataset='ade20k': --format=cityscapes writes "
                                        r"'cityscapes' classes"):
    predict.predict_split(config, None, 'validation', str(tmp_path),
                          output_format='cityscapes')
