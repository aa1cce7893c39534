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

from collections.abc import Iterator, Sequence
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


def decode(example: dict, info: DatasetInfo, config: ml_collections.ConfigDict):
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
                         builder: tfds.core.DatasetBuilder, *, start_step: int = 0,
                         process_index: int | None = None,
                         process_count: int | None = None) -> tf.data.Dataset:
  """Endless, shuffled, augmented batches of this process's slice of `config.train_split`,
  from the batch of step `start_step` + 1 on.

  The stream is a function of (config.seed, process, step) alone, so a resumed run reads the
  very batches an uninterrupted one would: epoch e reads the shards in an order drawn from
  (seed, e) through a shuffle buffer seeded the same way, and the k-th example of the stream is
  augmented from (seed, k). Resuming skips the serialized records of the partial epoch only.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  batch_size = local_batch_size(config.batch_size, process_count, 'batch_size')
  split = tfds.split_for_jax_process(config.train_split, process_index=process_index,
                                     process_count=process_count, drop_remainder=True)
  check_record_format(builder)
  shards = builder.info.splits[split].file_instructions
  shard_table = ([shard.filename for shard in shards],
                 tf.constant([shard.skip for shard in shards], tf.int64),
                 tf.constant([shard.take for shard in shards], tf.int64))
  epoch_size = sum(shard.take for shard in shards)
  first_example = start_step * batch_size
  process_seed = config.seed * 1_000 + process_index
  crop_size = tuple(config.crop_size)

  def epoch_records(epoch):
    key = tf.stack([tf.constant(2 * process_seed + 1, tf.int64), epoch])
    epoch_seed = tf.random.stateless_uniform([], key, minval=None, maxval=None, dtype=tf.int64)
    files = tf.data.Dataset.from_tensor_slices(shard_table).shuffle(len(shards), seed=epoch_seed)
    records = files.interleave(
        lambda filename, skip, take: tf.data.TFRecordDataset(filename).skip(skip).take(take),
        cycle_length=min(len(shards), 16), num_parallel_calls=tf.data.AUTOTUNE)
    return records.shuffle(config.shuffle_buffer_size, seed=epoch_seed)

  def preprocess(record, index):
    image, label = decode(builder.info.features.deserialize_example(record), info, config)
    example_seed = tf.stack([tf.constant(2 * process_seed, tf.int64), index])
    scale_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(example_seed, 3))
    image, label = preprocessing.random_scale(image, label, config.min_scale, config.max_scale,
                                              scale_seed)
    image, label, box = preprocessing.pad_to_size(image, label, crop_size, config.ignore_label)
    bounds = preprocessing.focus_crop_bounds(label, crop_size, tuple(config.focus_crop_classes),
                                             config.focus_crop_probability,
                                             tf.random.experimental.stateless_fold_in(crop_seed, 1))
    image, label, box = preprocessing.random_crop(image, label, box, crop_size, crop_seed, bounds)
    if config.flip:
      image, label, box = preprocessing.random_flip(image, label, box, flip_seed)
    return {'image': image, 'label': label[..., 0], 'box': box}

  endless = np.iinfo(np.int64).max
  records = tf.data.Dataset.range(first_example // epoch_size, endless).flat_map(epoch_records)
  records = records.skip(first_example % epoch_size)
  indices = tf.data.Dataset.range(first_example, endless)
  ds = tf.data.Dataset.zip(records, indices).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def check_record_format(builder: tfds.core.DatasetBuilder) -> None:
  """The training stream reads TFRecord shards itself (to seed each epoch); others are refused."""
  if builder.info.file_format != tfds.core.FileFormat.TFRECORD:
    raise ValueError(f'{builder.data_dir} is stored as {builder.info.file_format.value}; training '
                     'reads TFRecord datasets: prepare it again without a file_format')


def num_eval_batches(num_examples: int, eval_batch_size: int, process_count: int) -> int:
  """Batches each process runs so that the largest per-process slice fits."""
  local = local_batch_size(eval_batch_size, process_count, 'eval_batch_size')
  return math.ceil(math.ceil(num_examples / process_count) / local)


def create_eval_dataset(config: ml_collections.ConfigDict, info: DatasetInfo,
                        builder: tfds.core.DatasetBuilder, frame: Sequence[int] | None = None,
                        *, process_index: int | None = None,
                        process_count: int | None = None) -> tuple[tf.data.Dataset, int]:
  """This process's slice of `config.eval_split`, padded to `frame` (default:
  config.eval_crop_size) and to whole batches.

  Returns the dataset and its number of batches, the same on every process.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  batch_size = local_batch_size(config.eval_batch_size, process_count, 'eval_batch_size')
  num_examples = builder.info.splits[config.eval_split].num_examples
  num_batches = num_eval_batches(num_examples, config.eval_batch_size, process_count)
  split = tfds.even_splits(config.eval_split, n=process_count)[process_index]
  crop_size = tuple(frame or config.eval_crop_size)

  def preprocess(example):
    image, label = decode(example, info, config)
    if image.shape[:2].is_fully_defined() and (image.shape[0] > crop_size[0] or
                                               image.shape[1] > crop_size[1]):
      raise ValueError(f'{info.name} images are {image.shape[0]}x{image.shape[1]}, larger than '
                       f'the evaluation frame {crop_size} (config.eval_crop_size)')
    size = tf.shape(image)[:2]
    check = tf.debugging.Assert(tf.reduce_all(size <= crop_size), [
        'Evaluation image', _name(example, info), 'of size', size,
        'is larger than the evaluation frame (config.eval_crop_size)', crop_size])
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
