"""tf.data pipelines: each process reads its own slice of a split and yields numpy batches.

Images stay raw uint8 RGB pixels up to the model, which normalises them. Padding is zeros, and
each batch says where its images lie so that the device can fill the rest with the model's mean
pixel (`deeplab_jax.models.normalization`).

Training batches: {'image': uint8 [B, h, w, 3], 'label': int32 [B, h, w], 'box': int32 [B, 4]
(top, left, bottom, right of the pixels that belong to the image)}. Evaluation batches, padded
at the bottom and right to the eval crop size, hold 'image', 'label', 'size' (int32 [B, 2]: each
image's height and width before padding) and 'mask' (bool [B]): False marks padding examples,
so that every example of the split is counted exactly once whatever the batch size and number
of processes.
"""

from collections.abc import Iterator
import math

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax.config_error import check_splits
from deeplab_jax.data import preprocessing
from deeplab_jax.data.datasets import DatasetInfo


def local_batch_size(global_batch_size: int, process_count: int, key: str) -> int:
  """The batch each process loads; the global batch must split evenly over processes."""
  check_splits(key, global_batch_size, process_count, 'processes')
  return global_batch_size // process_count


def _decode(example: dict, info: DatasetInfo, config: ml_collections.ConfigDict):
  """(uint8 image, int32 label of class ids or the ignore value), the label map applied."""
  image = example[info.image_key]
  label = tf.cast(example[info.label_key], tf.int32)
  if info.label_map is not None:
    label = info.label_map(label, config.ignore_label)
  label = preprocessing.check_labels(label, info.num_classes, config.ignore_label,
                                     _name(example, info))
  return image, label


def _name(example: dict, info: DatasetInfo) -> tf.Tensor:
  return example.get(info.name_key, tf.constant('<unnamed>'))


def create_train_dataset(config: ml_collections.ConfigDict, info: DatasetInfo,
                         builder: tfds.core.DatasetBuilder, *, seed: int,
                         process_index: int | None = None,
                         process_count: int | None = None) -> tf.data.Dataset:
  """Endless, shuffled, augmented batches of this process's slice of `config.train_split`."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  batch_size = local_batch_size(config.batch_size, process_count, 'batch_size')
  split = tfds.split_for_jax_process(config.train_split, process_index=process_index,
                                     process_count=process_count, drop_remainder=True)
  seed = seed * 1_000 + process_index
  ds = builder.as_dataset(split, shuffle_files=True, read_config=tfds.ReadConfig(
      shuffle_seed=seed))
  ds = ds.shuffle(config.shuffle_buffer_size, seed=seed).repeat()
  crop_size = tuple(config.crop_size)

  def preprocess(example, example_seed):
    image, label = _decode(example, info, config)
    scale_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(example_seed, 3))
    image, label = preprocessing.random_scale(image, label, config.min_scale, config.max_scale,
                                              scale_seed)
    image, label, box = preprocessing.pad_to_size(image, label, crop_size, config.ignore_label)
    image, label, box = preprocessing.random_crop(image, label, box, crop_size, crop_seed)
    if config.flip:
      image, label, box = preprocessing.random_flip(image, label, box, flip_seed)
    return {'image': image, 'label': label[..., 0], 'box': box}

  seeds = tf.data.Dataset.random(seed=seed).batch(2)
  ds = tf.data.Dataset.zip(ds, seeds).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def num_eval_batches(num_examples: int, eval_batch_size: int, process_count: int) -> int:
  """Batches each process runs so that the largest per-process slice fits."""
  local = local_batch_size(eval_batch_size, process_count, 'eval_batch_size')
  return math.ceil(math.ceil(num_examples / process_count) / local)


def create_eval_dataset(config: ml_collections.ConfigDict, info: DatasetInfo,
                        builder: tfds.core.DatasetBuilder, *, process_index: int | None = None,
                        process_count: int | None = None) -> tuple[tf.data.Dataset, int]:
  """This process's slice of `config.eval_split`, padded to the crop size and to whole batches.

  Returns the dataset and its number of batches, the same on every process.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  batch_size = local_batch_size(config.eval_batch_size, process_count, 'eval_batch_size')
  num_examples = builder.info.splits[config.eval_split].num_examples
  num_batches = num_eval_batches(num_examples, config.eval_batch_size, process_count)
  split = tfds.even_splits(config.eval_split, n=process_count)[process_index]
  crop_size = tuple(config.eval_crop_size)

  def preprocess(example):
    image, label = _decode(example, info, config)
    if image.shape[:2].is_fully_defined() and (image.shape[0] > crop_size[0] or
                                               image.shape[1] > crop_size[1]):
      raise ValueError(f'{info.name} images are {image.shape[0]}x{image.shape[1]}, larger than '
                       f'config.eval_crop_size={crop_size}')
    size = tf.shape(image)[:2]
    check = tf.debugging.Assert(tf.reduce_all(size <= crop_size), [
        'Evaluation image', _name(example, info), 'of size', size,
        'is larger than config.eval_crop_size', crop_size])
    with tf.control_dependencies([check]):
      image, label, _ = preprocessing.pad_to_size(image, label, crop_size, config.ignore_label)
    image = tf.ensure_shape(image, [*crop_size, 3])
    label = tf.ensure_shape(label[..., 0], crop_size)
    return {'image': image, 'label': label, 'size': size, 'mask': tf.constant(True)}

  padding = tf.data.Dataset.from_tensors({
      'image': tf.zeros([*crop_size, 3], tf.uint8),
      'label': tf.fill(crop_size, tf.constant(config.ignore_label, tf.int32)),
      'size': tf.zeros([2], tf.int32), 'mask': tf.constant(False)}).repeat()
  ds = builder.as_dataset(split, shuffle_files=False).map(
      preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.concatenate(padding).take(num_batches * batch_size).batch(batch_size)
  return ds.prefetch(tf.data.AUTOTUNE), num_batches


def as_numpy(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  return iter(tfds.as_numpy(ds))
