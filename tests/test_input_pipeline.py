"""Augmentation ops on hand-built inputs, label checks, uint8 training batches whose boxes mark
the image in each crop, and exact-once evaluation batches."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import tiny_shapes_config
from deeplab_jax.data import datasets
from deeplab_jax.data import input_pipeline
from deeplab_jax.data import preprocessing


def coordinate_example(height=10, width=12):
  """An image whose pixel (y, x) holds (y, x, 7) and a label holding y * width + x."""
  y, x = np.mgrid[:height, :width]
  image = np.stack([y, x, np.full_like(y, 7)], -1).astype(np.float32)
  label = (y * width + x)[..., None].astype(np.int32)
  return tf.constant(image), tf.constant(label)


def assert_aligned(image, label, width=12):
  image, label = np.asarray(image), np.asarray(label)[..., 0]
  valid = label != 255
  np.testing.assert_array_equal(label[valid], (image[..., 0] * width + image[..., 1])[valid])


def box_of_image(image) -> list[int]:
  """(top, left, bottom, right) of the pixels of a crop that come from a coordinate example:
  those whose third channel is 7 (padding is 0)."""
  rows, cols = np.nonzero(np.asarray(image)[..., 2] == 7)
  return [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]


def test_pad_to_size_uses_zeros_and_ignore_value_and_gives_the_box():
  image, label = coordinate_example(4, 5)
  padded_image, padded_label, box = preprocessing.pad_to_size(image, label, (6, 7), 255)
  assert padded_image.shape == (6, 7, 3) and padded_label.shape == (6, 7, 1)
  np.testing.assert_array_equal(padded_image[:4, :5], image)
  np.testing.assert_array_equal(padded_label[:4, :5], label)
  assert (np.asarray(padded_image)[4:] == 0).all() and (np.asarray(padded_image)[:, 5:] == 0).all()
  assert (np.asarray(padded_label)[4:] == 255).all() and (np.asarray(padded_label)[:, 5:] ==
                                                          255).all()
  assert list(np.asarray(box)) == [0, 0, 4, 5]


def test_crop_and_flip_keep_image_label_and_box_aligned():
  # A 10x12 image padded to 12x14 and cropped to 11x13: crops hold padding at the bottom or
  # right, on the left once flipped; the box must follow the image's pixels.
  image, label = coordinate_example()
  padded_image, padded_label, padded_box = preprocessing.pad_to_size(image, label, (12, 14), 255)
  crops, flips = set(), 0
  for seed in range(20):
    cropped_image, cropped_label, box = preprocessing.random_crop(
        padded_image, padded_label, padded_box, (11, 13), [seed, 1])
    assert cropped_image.shape == (11, 13, 3)
    assert_aligned(cropped_image, cropped_label)
    assert list(np.asarray(box)) == box_of_image(cropped_image)
    crops.add(tuple(np.asarray(box)))
    flipped_image, flipped_label, flipped_box = preprocessing.random_flip(
        cropped_image, cropped_label, box, [seed, 2])
    assert_aligned(flipped_image, flipped_label)
    assert list(np.asarray(flipped_box)) == box_of_image(flipped_image)
    flips += not np.array_equal(flipped_image, cropped_image)
  assert len(crops) > 2 and 0 < flips < 20  # Offsets and flips vary with the seed.


def windows_holding(pixel, label_shape, size):
  """numpy reference: the (top, left) of every `size` window of `label_shape` holding `pixel`."""
  return {(top, left) for top in range(label_shape[0] - size[0] + 1)
          for left in range(label_shape[1] - size[1] + 1)
          if top <= pixel[0] < top + size[0] and left <= pixel[1] < left + size[1]}


def focused_windows(label, size, classes, probability, seeds):
  """The (top, left) of the crops random_crop takes within focus_crop_bounds, one per seed."""
  image, _ = coordinate_example(*label.shape)
  label, box = tf.constant(label[..., None], tf.int32), tf.constant([0, 0, *label.shape])
  windows = []
  for seed in seeds:
    bounds = preprocessing.focus_crop_bounds(label, size, classes, probability, [seed, 4])
    crop, _, _ = preprocessing.random_crop(image, label, box, size, [seed, 5], bounds)
    windows.append((int(crop[0, 0, 0]), int(crop[0, 0, 1])))  # It holds its own (y, x).
  return windows


def test_focus_crops_hold_a_pixel_of_the_class_and_reach_every_such_window():
  label = np.zeros((30, 40), np.int32)
  label[20, 3] = 2  # One pixel of class 2, near the left edge: windows hold it on one side.
  windows = focused_windows(label, (11, 13), (2,), 1.0, range(400))
  assert set(windows) == windows_holding((20, 3), label.shape, (11, 13))  # 11 x 4 of them.


def test_focus_crops_draw_the_class_uniformly_then_its_pixel():
  # Class 2 holds one pixel, class 3 a 10x10 block far from it: with pixels drawn uniformly,
  # class 2 would be in 1 crop of 101; drawn by class, in half of them.
  label = np.zeros((60, 60), np.int32)
  label[2, 2] = 2
  label[45:55, 45:55] = 3
  windows = focused_windows(label, (11, 11), (2, 3, 1), 1.0, range(200))  # 1 is absent.
  near_class_2 = sum(window in windows_holding((2, 2), label.shape, (11, 11))
                     for window in windows)
  assert 70 < near_class_2 < 130
  block = {(top, left) for top in range(35, 55) for left in range(35, 55)}
  assert all(window in block for window in windows if window[0] > 2)


def test_focus_crops_happen_with_their_probability_and_only_when_the_class_is_there():
  label = np.zeros((60, 60), np.int32)
  label[0, 0] = 1  # Uniform 11x11 crops hold it once in 50 x 50.
  corner = windows_holding((0, 0), label.shape, (11, 11))
  windows = focused_windows(label, (11, 11), (1,), 0.5, range(200))
  assert 70 < sum(window in corner for window in windows) < 130
  absent = focused_windows(label, (11, 11), (2,), 1.0, range(100))
  assert len(set(absent)) > 50 and sum(window in corner for window in absent) < 5


def test_flip_happens_about_half_the_time():
  image, label = coordinate_example()
  box = tf.constant([0, 0, 10, 12])
  flips = [int(preprocessing.random_flip(image, label, box, [seed, 0])[1][0, 0, 0]) != 0
           for seed in range(200)]
  assert 70 < sum(flips) < 130


def test_random_scale_range_and_nearest_labels():
  image, label = coordinate_example(20, 30)
  for seed in range(10):
    scaled_image, scaled_label = preprocessing.random_scale(image, label, 0.5, 2.0, [seed, 3])
    height, width = scaled_image.shape[:2]
    assert 10 <= height <= 40 and 15 <= width <= 60 and scaled_label.shape[:2] == (height, width)
    assert set(np.unique(scaled_label)) <= set(np.unique(label))  # Nearest: no new values.


def test_bad_label_value_names_the_file_and_value():
  label = tf.constant([[0, 3], [255, 9]], tf.int32)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'(?s)bad_file\.png.*9'):
    preprocessing.check_labels(label, 4, 255, tf.constant('bad_file.png'))
  preprocessing.check_labels(tf.constant([[0, 3], [255, 1]]), 4, 255, tf.constant('ok.png'))


def test_train_batches(shapes_dir):
  config = tiny_shapes_config(shapes_dir)
  info = datasets.get('shapes')
  builder = datasets.prepare_builder(info, shapes_dir)
  batches = input_pipeline.as_numpy(
      input_pipeline.create_train_dataset(config, info, builder))
  batch = next(batches)
  assert batch['image'].shape == (8, 33, 33, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (8, 33, 33) and batch['label'].dtype == np.int32
  assert set(np.unique(batch['label'])) <= {0, 1, 2, 3, 255}
  # Scale 0.5 turns 64x64 into 32x32 padded to 33: the last row, and the last column or (when
  # flipped) the first, are padding, ignored and outside the box.
  assert (batch['label'][:, 32, :] == 255).all() and (batch['image'][:, 32, :] == 0).all()
  flipped = batch['box'][:, 1] == 1
  assert 0 < flipped.sum() < 8
  np.testing.assert_array_equal(batch['box'], [[0, 1, 32, 33] if f else [0, 0, 32, 32]
                                               for f in flipped])
  assert (batch['label'][flipped, :, 0] == 255).all()
  assert (batch['label'][~flipped, :, 32] == 255).all()
  again = next(input_pipeline.as_numpy(
      input_pipeline.create_train_dataset(config, info, builder)))
  np.testing.assert_array_equal(batch['image'], again['image'])  # Reproducible.


def image_digest(image: np.ndarray) -> str:
  return hashlib.sha1(np.ascontiguousarray(image, np.uint8).tobytes()).hexdigest()


def train_batches(config, builder, start_step, count, process_index=0, process_count=1):
  ds = input_pipeline.create_train_dataset(config, datasets.get('shapes'), builder,
                                           start_step=start_step, process_index=process_index,
                                           process_count=process_count)
  return list(ds.take(count).as_numpy_iterator())


def test_train_stream_with_focus_crops_holds_the_class_whenever_the_image_does(shapes_dir):
  config = tiny_shapes_config(shapes_dir)
  config.min_scale = config.max_scale = 2.0  # 128x128 images: a 33x33 crop is a small part.
  builder = datasets.prepare_builder(datasets.get('shapes'), shapes_dir)

  def holds_class_3(crop_size, probability):
    config.crop_size, config.focus_crop_probability = crop_size, probability
    config.focus_crop_classes = (3,)
    return np.concatenate([(batch['label'] == 3).any(axis=(1, 2))
                           for batch in train_batches(config, builder, 0, 4)])

  in_image = holds_class_3((129, 129), 0.0)  # The whole image, in the same order.
  np.testing.assert_array_equal(holds_class_3((33, 33), 1.0), in_image)
  assert holds_class_3((33, 33), 0.0).sum() < in_image.sum()


@pytest.mark.parametrize('process_index', [0, 1])
def test_train_stream_resumed_at_a_step_is_the_same_stream(shapes_dir, process_index):
  config = tiny_shapes_config(shapes_dir)
  config.train_split, config.batch_size = 'train[:24]', 10  # Epochs of 12 per process.
  config.min_scale, config.max_scale = 0.5, 1.5  # Every augmentation draws something.
  builder = datasets.prepare_builder(datasets.get('shapes'), shapes_dir)
  stream = train_batches(config, builder, 0, 5, process_index, 2)
  for start_step in (1, 3):  # 5 examples into epoch 0; 3 into epoch 2.
    for want, got in zip(stream[start_step:], train_batches(config, builder, start_step, 2,
                                                          process_index, 2)):
      for key in ('image', 'label', 'box'):
        np.testing.assert_array_equal(got[key], want[key])
  other = train_batches(config, builder, 0, 1, 1 - process_index, 2)[0]
  assert not np.array_equal(other['image'], stream[0]['image'])  # Each process its own slice.


def test_train_stream_reads_each_example_once_per_epoch_in_new_orders(shapes_dir):
  config = tiny_shapes_config(shapes_dir)
  config.train_split, config.batch_size = 'train[:20]', 4
  config.crop_size, config.min_scale, config.max_scale, config.flip = (65, 65), 1.0, 1.0, False
  builder = datasets.prepare_builder(datasets.get('shapes'), shapes_dir)
  want = sorted(image_digest(example['image'][:64, :64]) for example in
                tfds.as_numpy(builder.as_dataset('train[:20]')))
  crops = np.concatenate([batch['image'] for batch in train_batches(config, builder, 0, 15)])
  epochs = [[image_digest(crop[:64, :64]) for crop in crops[start:start + 20]]
            for start in (0, 20, 40)]
  for epoch in epochs:
    assert sorted(epoch) == want
  assert len({tuple(epoch) for epoch in epochs}) == 3


@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_eval_counts_every_example_exactly_once(shapes_dir, process_count):
  config = tiny_shapes_config(shapes_dir)
  config.eval_split, config.eval_crop_size = 'validation[:25]', (65, 65)
  config.eval_batch_size = 4 * process_count  # 25 is a multiple of neither.
  info = datasets.get('shapes')
  builder = datasets.prepare_builder(info, shapes_dir)
  want = sorted(image_digest(example['image']) for example in
                tfds.as_numpy(builder.as_dataset('validation[:25]')))
  seen, batch_counts = [], []
  for process_index in range(process_count):
    ds, num_batches = input_pipeline.create_eval_dataset(
        config, info, builder, process_index=process_index, process_count=process_count)
    batches = list(input_pipeline.as_numpy(ds))
    assert len(batches) == num_batches
    batch_counts.append(num_batches)
    for batch in batches:
      assert batch['image'].shape == (4, 65, 65, 3)
      assert (batch['label'][~batch['mask']] == 255).all()  # Padding examples are ignored.
      assert (batch['size'][batch['mask']] == 64).all()  # Sizes before padding to 65.
      assert (batch['size'][~batch['mask']] == 0).all()
      for image in batch['image'][batch['mask']]:
        seen.append(image_digest(image[:64, :64]))
  assert len(set(batch_counts)) == 1  # Every process runs the same number of steps.
  assert sorted(seen) == want


def test_batch_not_divisible_by_processes_names_the_key(shapes_dir):
  config = tiny_shapes_config(shapes_dir)
  config.eval_batch_size = 5
  info = datasets.get('shapes')
  builder = datasets.prepare_builder(info, shapes_dir)
  with pytest.raises(ValueError, match='eval_batch_size'):
    input_pipeline.create_eval_dataset(config, info, builder, process_index=0, process_count=2)


def test_eval_images_larger_than_the_crop_name_the_key(shapes_dir):
  config = tiny_shapes_config(shapes_dir)
  config.eval_crop_size = (33, 33)
  info = datasets.get('shapes')
  builder = datasets.prepare_builder(info, shapes_dir)
  with pytest.raises(ValueError, match='eval_crop_size'):
    input_pipeline.create_eval_dataset(config, info, builder)
