"""Per-class loss weights: an explicit list, or SegNet's median-frequency balancing computed from
the training split's labels once and cached beside the prepared dataset."""

import json
import re

from absl import logging
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax.config_error import ConfigError
from deeplab_jax.data import input_pipeline
from deeplab_jax.data.datasets import DatasetInfo

MEDIAN_FREQUENCY = 'median_frequency'


def label_histogram(config: ml_collections.ConfigDict, info: DatasetInfo,
                    builder: tfds.core.DatasetBuilder, split: str) -> dict[str, list[int]]:
  """{'pixels': per class, its labelled pixels in `split`; 'image_pixels': per class, all the
  pixels of the images where it appears}. Only the labels are decoded."""
  num_classes = info.num_classes

  def count(example):
    _, label = input_pipeline.decode(example, info, config)
    label = tf.reshape(label, [-1])
    pixels = tf.math.bincount(tf.where(label == config.ignore_label, num_classes, label),
                              minlength=num_classes + 1, dtype=tf.int64)[:num_classes]
    return pixels, tf.cast(pixels > 0, tf.int64) * tf.size(label, tf.int64)

  examples = builder.as_dataset(split, decoders={info.image_key: tfds.decode.SkipDecoding()})
  pixels = np.zeros(num_classes, np.int64)
  image_pixels = np.zeros(num_classes, np.int64)
  for image_counts, image_totals in tfds.as_numpy(examples.map(count, tf.data.AUTOTUNE)):
    pixels += image_counts
    image_pixels += image_totals
  return {'pixels': pixels.tolist(), 'image_pixels': image_pixels.tolist()}


def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
  """SegNet's weights (Eigen & Fergus 2015): median(freq) / freq(c), where freq(c) is class c's
  pixels over the pixels of the images where c appears. A class never seen weighs 0."""
  pixels, image_pixels = np.asarray(pixels, np.float64), np.asarray(image_pixels, np.float64)
  seen = pixels > 0
  frequency = np.where(seen, pixels / np.maximum(image_pixels, 1), np.inf)
  return np.where(seen, np.median(frequency[seen]) / frequency, 0.0).astype(np.float32)


def cached_label_histogram(config: ml_collections.ConfigDict, info: DatasetInfo,
                           builder: tfds.core.DatasetBuilder) -> dict[str, list[int]]:
  """`label_histogram` of config.train_split, read from (or first written to)
  <the prepared dataset>/label_histogram_<split>.json."""
  name = re.sub(r'[^\w.-]+', '_', config.train_split)
  path = tf.io.gfile.join(builder.data_dir, f'label_histogram_{name}.json')
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as file:
      return json.load(file)
  logging.info('Counting the labels of %s %s for median-frequency class weights', info.name,
               config.train_split)
  histogram = label_histogram(config, info, builder, config.train_split)
  with tf.io.gfile.GFile(path + '.tmp', 'w') as file:
    json.dump(histogram, file)
  tf.io.gfile.rename(path + '.tmp', path, overwrite=True)
  return histogram


def class_weights(config: ml_collections.ConfigDict, info: DatasetInfo,
                  builder: tfds.core.DatasetBuilder) -> tuple[float, ...] | None:
  """The loss's per-class weights `config.class_weights` asks for (None: none); logged."""
  weights = config.class_weights
  if weights is None:
    return None
  if isinstance(weights, str):
    if weights != MEDIAN_FREQUENCY:
      raise ConfigError('class_weights', weights,
                        f"takes one weight per class or '{MEDIAN_FREQUENCY}'", MEDIAN_FREQUENCY)
    power = config.median_frequency_power
    if not isinstance(power, (int, float)) or not 0 <= power < np.inf:
      raise ConfigError('median_frequency_power', power, 'takes a finite number, at least 0',
                        0.5)
    histogram = cached_label_histogram(config, info, builder)
    weights = median_frequency_weights(histogram['pixels'], histogram['image_pixels']) ** power
  if (not isinstance(weights, (tuple, list, np.ndarray)) or len(weights) != info.num_classes or
      not all(isinstance(w, (int, float, np.floating)) and 0 <= w < np.inf for w in weights)):
    raise ConfigError('class_weights', weights, f'takes {info.num_classes} finite weights, at '
                      f'least 0, one per class of {info.name!r}', MEDIAN_FREQUENCY)
  weights = tuple(float(weight) for weight in weights)
  logging.info('Class weights: %s', ', '.join(
      f'{name} {weight:.4f}' for name, weight in zip(info.class_names, weights)))
  return weights
