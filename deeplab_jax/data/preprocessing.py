"""Per-example TF ops of the official DeepLab recipe: scale, pad, crop, flip.

Images are [H, W, 3] RGB in 0..255 (uint8 from the datasets); labels are int32 [H, W, 1].
Padding is zero in the
image and the ignore value in the label; a box (int32 [4]: top, left, bottom, right) says which
pixels of a crop belong to the image, so that the device can put the model's mean pixel in the
rest (`deeplab_jax.models.normalization`). Randomness is stateless, driven by an explicit seed
per example, so a pipeline is reproducible.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf


def check_labels(label: tf.Tensor, num_classes: int, ignore_label: int,
                 file_name: tf.Tensor) -> tf.Tensor:
  """Returns `label`, failing (with the file named) if a value is neither a class nor ignored.

  The offending values are gathered, for the message, only when there are some.
  """
  invalid = (label >= num_classes) & (label != ignore_label) | (label < 0)

  def fail():
    bad = tf.boolean_mask(label, invalid)
    check = tf.debugging.Assert(
        False,
        ['Label values that are neither a class id (0 ..', num_classes - 1, ') nor the ignore '
         'value', ignore_label, 'in', file_name, ': first ones', bad[:5]], summarize=5)
    with tf.control_dependencies([check]):
      return tf.identity(label)

  return tf.cond(tf.reduce_any(invalid), fail, lambda: label)


def random_scale(image: tf.Tensor, label: tf.Tensor, min_scale: float, max_scale: float,
                 seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Rescales by a factor drawn uniformly from [min_scale, max_scale]: bilinear / nearest.

  The image keeps its dtype; integer pixels are rounded after the bilinear resize.
  """
  if min_scale == max_scale == 1.0:
    return image, label
  scale = tf.random.stateless_uniform([], seed, min_scale, max_scale)
  size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
  resized = tf.image.resize(image, size, method='bilinear')
  image = resized if image.dtype.is_floating else tf.cast(tf.round(resized), image.dtype)
  label = tf.image.resize(label, size, method='nearest')
  return image, label


def pad_to_size(image: tf.Tensor, label: tf.Tensor, size: Sequence[int],
                ignore_label: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Pads bottom and right up to at least `size`, the image with zeros and the label with the
  ignore value so padding never counts; also returns the box of the image in the result."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  paddings = [[0, tf.maximum(size[0] - height, 0)], [0, tf.maximum(size[1] - width, 0)], [0, 0]]
  image = tf.pad(image, paddings)
  label = tf.pad(label, paddings, constant_values=ignore_label)
  return image, label, tf.stack([0, 0, height, width])


def any_crop_bounds(image: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
  """Bounds (first top, last top, first left, last left) of every `size` window of `image`."""
  return tf.stack([0, tf.shape(image)[0] - size[0], 0, tf.shape(image)[1] - size[1]])


def focus_crop_bounds(label: tf.Tensor, size: Sequence[int], classes: Sequence[int],
                      probability: float, seed: tf.Tensor) -> tf.Tensor:
  """The bounds of a `size` window of `label` (as `any_crop_bounds`) for class-uniform crops.

  With `probability`, and if `label` holds any of `classes`, only windows that contain one
  pixel are allowed: a class drawn uniformly among those present, then one of its pixels
  (class-uniform sampling, as Zhu et al. 2019 do for Cityscapes' rare classes). Otherwise any.
  """
  anywhere = any_crop_bounds(label, size)
  if not classes or probability <= 0:
    return anywhere
  coin_seed, class_seed, pixel_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  is_class = label[None, ..., 0] == tf.constant(classes, tf.int32)[:, None, None]  # [C, H, W]
  present = tf.reduce_any(is_class, axis=[1, 2])

  def around_a_pixel():
    logits = tf.where(present, 0.0, -np.inf)[None]
    chosen = tf.random.stateless_categorical(logits, 1, class_seed, dtype=tf.int32)[0, 0]
    pixels = tf.cast(tf.where(is_class[chosen]), tf.int32)
    index = tf.random.stateless_uniform([], pixel_seed, 0, tf.shape(pixels)[0], dtype=tf.int32)
    y, x = pixels[index, 0], pixels[index, 1]
    return tf.stack([tf.maximum(y - size[0] + 1, 0), tf.minimum(y, anywhere[1]),
                     tf.maximum(x - size[1] + 1, 0), tf.minimum(x, anywhere[3])])

  focus = (tf.random.stateless_uniform([], coin_seed) < probability) & tf.reduce_any(present)
  return tf.cond(focus, around_a_pixel, lambda: anywhere)


def random_crop(image: tf.Tensor, label: tf.Tensor, box: tf.Tensor, size: Sequence[int],
                seed: tf.Tensor,
                bounds: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The same random `size` window of image and label (both at least that large), and the
  image's `box` within it; `bounds` (`focus_crop_bounds`) limit where the window starts."""
  bounds = any_crop_bounds(image, size) if bounds is None else bounds
  top_seed, left_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  top = tf.random.stateless_uniform([], top_seed, bounds[0], bounds[1] + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], left_seed, bounds[2], bounds[3] + 1, dtype=tf.int32)
  image = image[top:top + size[0], left:left + size[1]]
  label = label[top:top + size[0], left:left + size[1]]
  box = tf.clip_by_value(box - tf.stack([top, left, top, left]), 0, tf.tile(size, [2]))
  return tf.ensure_shape(image, [*size, 3]), tf.ensure_shape(label, [*size, 1]), box


def random_flip(image: tf.Tensor, label: tf.Tensor, box: tf.Tensor,
                seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Flips image, label and box left-right together with probability 1/2."""
  width = tf.shape(image)[1]
  flipped_box = tf.stack([box[0], width - box[3], box[2], width - box[1]])
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: (image[:, ::-1], label[:, ::-1], flipped_box),
                 lambda: (image, label, box))
