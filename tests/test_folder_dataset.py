"""The `folder` dataset: both layouts, index and palette PNG labels, the ignore value mapped at
the pipeline's edge, and an error naming the file for every kind of bad data."""

import logging
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from conftest import load_config
from deeplab_jax import experiment
from deeplab_jax.config_error import ConfigError
from deeplab_jax.data import datasets
from deeplab_jax.data import input_pipeline
from deeplab_jax.data.datasets import folder
from deeplab_jax.data.datasets import palettes

NUM_CLASSES, IGNORE = 3, 7


def write_pair(directory, stem, size, seed, *, palette=False, suffix='.png'):
  """An image and a label of class ids (and IGNORE) in `directory`/{images,labels}."""
  rng = np.random.default_rng(seed)
  height, width = size
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  label = rng.choice([0, 1, 2, IGNORE], size=(height, width)).astype(np.uint8)
  os.makedirs(directory / 'images', exist_ok=True)
  os.makedirs(directory / 'labels', exist_ok=True)
  Image.fromarray(image).save(directory / 'images' / f'{stem}{suffix}')
  label_image = Image.fromarray(label, mode='L')
  if palette:
    label_image = label_image.convert('P')
    label_image.putpalette(palettes.pascal().reshape(-1).tolist())
    label_image.frombytes(label.tobytes())  # Palette indices are the class ids.
  label_image.save(directory / 'labels' / f'{stem}.png')
  return image, label


def folder_config(root, data_dir):
  config = load_config('folder')
  config.folder.root = str(root)
  config.folder.ignore_value = IGNORE
  config.folder.num_classes = config.model.num_classes = NUM_CLASSES
  config.data_dir = str(data_dir)
  return config


def read_split(config, split):
  info = datasets.get('folder', config.folder)
  builder = datasets.prepare_builder(info, config.data_dir)
  examples = {}
  for example in tfds.as_numpy(builder.as_dataset(split)):
    label = np.asarray(info.label_map(example['segmentation_mask'][..., 0], 255))
    examples[example['file_name'].decode()] = (example['image'], label)
  return examples


def test_split_folders_with_index_and_palette_labels(tmp_path):
  root = tmp_path / 'data'
  written = {
      'train/images/a.png': write_pair(root / 'train', 'a', (12, 17), 0),
      'train/images/b.png': write_pair(root / 'train', 'b', (9, 14), 1, palette=True),
      'val/images/c.png': write_pair(root / 'val', 'c', (15, 10), 2, palette=True),
  }
  config = folder_config(root, tmp_path / 'tfds')
  read = {**read_split(config, 'train'), **read_split(config, 'val')}
  assert set(read) == set(written)
  for name, (image, label) in written.items():
    np.testing.assert_array_equal(read[name][0], image)
    np.testing.assert_array_equal(read[name][1], np.where(label == IGNORE, 255, label))


def test_split_lists_and_jpeg_images(tmp_path):
  root = tmp_path / 'data'
  for index in range(5):
    write_pair(root, f'img{index}', (10, 13), index, suffix='.jpg')
  os.makedirs(root / 'splits')
  (root / 'splits' / 'train.txt').write_text('img0\nimg1\nimg2\n')
  (root / 'splits' / 'val.txt').write_text('img3\nimg4\n')
  config = folder_config(root, tmp_path / 'tfds')
  assert sorted(read_split(config, 'train')) == ['images/img0.jpg', 'images/img1.jpg',
                                                 'images/img2.jpg']
  assert sorted(read_split(config, 'val')) == ['images/img3.jpg', 'images/img4.jpg']


def test_training_batches_come_through_the_pipeline(tmp_path):
  root = tmp_path / 'data'
  for index in range(4):
    write_pair(root / 'train', f'{index}', (20, 24), index)
  config = folder_config(root, tmp_path / 'tfds')
  config.crop_size, config.batch_size = (17, 17), 2
  info = datasets.get('folder', config.folder)
  builder = datasets.prepare_builder(info, config.data_dir)
  batch = next(input_pipeline.as_numpy(input_pipeline.create_train_dataset(
      config, info, builder)))
  assert batch['image'].shape == (2, 17, 17, 3)
  assert set(np.unique(batch['label'])) <= {0, 1, 2, 255}


def test_a_changed_folder_is_built_again(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (8, 8), 0)
  before = folder.FolderConfig.create(str(root), NUM_CLASSES, IGNORE).name
  write_pair(root / 'train', 'b', (8, 8), 1)
  assert folder.FolderConfig.create(str(root), NUM_CLASSES, IGNORE).name != before


def build(root, tmp_path):
  config = folder_config(root, tmp_path / 'tfds')
  return datasets.prepare_builder(datasets.get('folder', config.folder), config.data_dir)


def test_image_without_label_is_named(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (8, 8), 0)
  write_pair(root / 'train', 'b', (8, 8), 1)
  os.remove(root / 'train' / 'labels' / 'b.png')
  with pytest.raises(datasets.DataError, match=r'without a matching label, e\.g\. .*b\.png'):
    build(root, tmp_path)


def test_label_without_image_is_named(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (8, 8), 0)
  write_pair(root / 'train', 'b', (8, 8), 1)
  os.remove(root / 'train' / 'images' / 'a.png')
  with pytest.raises(datasets.DataError, match=r'without a matching image, e\.g\. .*labels/a\.png'):
    build(root, tmp_path)


def test_size_mismatch_is_named(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (8, 8), 0)
  Image.fromarray(np.zeros((8, 9), np.uint8)).save(root / 'train' / 'labels' / 'a.png')
  with pytest.raises(datasets.DataError, match=r'a\.png: label is 9x8 but its image .* is 8x8'):
    build(root, tmp_path)


def test_value_neither_class_nor_ignore_is_named(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (8, 8), 0)
  label = np.zeros((8, 8), np.uint8)
  label[3, 4] = 5
  Image.fromarray(label).save(root / 'train' / 'labels' / 'a.png')
  with pytest.raises(datasets.DataError, match=r'labels/a\.png: label value\(s\) \[5\] are '
                     r'neither a class id \(0\.\.2\) nor the ignore value 7'):
    build(root, tmp_path)


def test_truncated_image_is_named(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (30, 30), 0, suffix='.jpg')
  path = root / 'train' / 'images' / 'a.jpg'
  path.write_bytes(path.read_bytes()[:200])
  with pytest.raises(datasets.DataError, match=r'images/a\.jpg: unreadable image'):
    build(root, tmp_path)


def test_colour_label_is_refused(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (8, 8), 0)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / 'train' / 'labels' / 'a.png')
  with pytest.raises(datasets.DataError, match=r'a\.png: labels must be single-channel or '
                     r'palette PNGs of class ids, this one is RGB'):
    build(root, tmp_path)


def test_missing_root_names_the_key(tmp_path):
  config = folder_config(tmp_path / 'nowhere', tmp_path / 'tfds')
  with pytest.raises(datasets.DataError, match='config.folder.root: .*nowhere is not a directory'):
    datasets.get('folder', config.folder)
  config.folder.root = None
  with pytest.raises(ValueError, match='config.folder.root'):
    datasets.get('folder', config.folder)


def test_folder_classes_are_named_or_counted_and_checked_against_the_model(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (8, 8), 0)
  config = folder_config(root, tmp_path / 'tfds')
  assert datasets.get('folder', config.folder).class_names == ('class_0', 'class_1', 'class_2')
  config.folder.class_names = ('sky', 'road', 'car')
  assert datasets.get('folder', config.folder).class_names == ('sky', 'road', 'car')
  config.folder.num_classes = 4
  with pytest.raises(ValueError, match=r"config.folder.num_classes=4: .*class_names=\('sky', "
                     r"'road', 'car'\); e.g. --config.folder.num_classes=3"):
    datasets.get('folder', config.folder)
  config.folder.class_names, config.folder.num_classes = (), 0
  with pytest.raises(ValueError, match='config.folder.num_classes=0: name the classes'):
    datasets.get('folder', config.folder)
  # The model's class count is checked against the folder's, which no longer follows it.
  config.folder.num_classes, config.model.num_classes = 3, 5
  with pytest.raises(ValueError, match=r"config.model.num_classes=5: dataset 'folder' has "
                     '3 classes'):
    experiment.prepare(config)


def test_exif_orientation_is_warned_about_and_the_pixels_read_as_stored(tmp_path, caplog):
  # The label was drawn on the stored 10 x 14 pixels, which viewers show turned to 14 x 10.
  root = tmp_path / 'data'
  image, _ = write_pair(root / 'train', 'turned', (10, 14), 0, suffix='.jpg')
  path = root / 'train' / 'images' / 'turned.jpg'
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to view.
  Image.fromarray(image).save(path, exif=exif)
  with Image.open(path) as file:
    stored = np.asarray(file.convert('RGB'))
  with caplog.at_level(logging.WARNING, logger='absl'):
    read = read_split(folder_config(root, tmp_path / 'tfds'), 'train')
  np.testing.assert_array_equal(read['train/images/turned.jpg'][0], stored)
  assert f'{path}: EXIF orientation 6 ignored' in caplog.text


def test_an_eval_crop_smaller_than_a_validation_image_is_named_before_training(tmp_path):
  root = tmp_path / 'data'
  write_pair(root / 'train', 'a', (12, 17), 0)
  write_pair(root / 'val', 'tall', (40, 10), 1)
  write_pair(root / 'val', 'wide', (12, 50), 2, suffix='.jpg')
  config = folder_config(root, tmp_path / 'tfds')
  config.eval_split, config.eval_crop_size, config.model.output_stride = 'val', (33, 33), 16
  info = datasets.get('folder', config.folder)
  builder = datasets.prepare_builder(info, config.data_dir)
  with pytest.raises(ConfigError, match=r"^config.eval_crop_size=\(33, 33\): val of .* holds "
                     r"images up to 40x50 \(val/images/(tall.png|wide.jpg)\), and evaluation "
                     r"pads each to the crop; e.g. --config.eval_crop_size='\(49, 65\)'$"):
    experiment.eval_frames(config, info, builder)
  config.eval_crop_size = (49, 65)
  experiment.eval_frames(config, info, builder)
