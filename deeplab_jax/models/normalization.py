"""Raw pixels into a model: each backbone's normalisation, and padding that reads as the mean pixel.

Images travel as raw RGB pixels (uint8 on the host) up to the model, which normalises them as
its first operation, so prediction, export, the CRF and TensorBoard never un-normalise. uint8
cannot hold a mean pixel such as 127.5, so the host pads images with any value and says where
each image lies (a box, or its size); on the device, before anything reads the pixels,
`fill_padding` puts the model's mean pixel there, which normalises to exactly 0.
"""

from collections.abc import Sequence
import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Normalization:
  """pixel -> (pixel - mean_rgb) / std_rgb, on 0..255 RGB pixels."""
  mean_rgb: tuple[float, float, float]
  std_rgb: tuple[float, float, float]


# torchvision's ImageNet statistics, which its pretrained backbones expect.
IMAGENET = Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
# TF DeepLab's scaling to [-1, 1] (Xception, the ResNet "beta" variants).
SYMMETRIC = Normalization((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))


def normalize(pixels: jax.Array, mean_rgb: Sequence[float], std_rgb: Sequence[float]) -> jax.Array:
  """float32 (pixels - mean_rgb) / std_rgb."""
  pixels = jnp.asarray(pixels, jnp.float32)
  return (pixels - jnp.asarray(mean_rgb, jnp.float32)) / jnp.asarray(std_rgb, jnp.float32)


def boxes_from_sizes(sizes: jax.Array) -> jax.Array:
  """int32 [B, 4] boxes (top, left, bottom, right) of images of `sizes` ([B, 2] height, width)
  at the top left of their padded frame."""
  sizes = jnp.asarray(sizes, jnp.int32)
  return jnp.concatenate([jnp.zeros_like(sizes), sizes], axis=-1)


def fill_padding(pixels: jax.Array, boxes: jax.Array, mean_rgb: Sequence[float]) -> jax.Array:
  """float32 `pixels` ([B, H, W, 3]) with the mean pixel outside each image's box.

  boxes: int32 [B, 4], (top, left, bottom, right) of the pixels that belong to the image.
  """
  height, width = pixels.shape[1:3]
  boxes = jnp.asarray(boxes, jnp.int32)[:, :, None]
  rows, cols = jnp.arange(height)[None], jnp.arange(width)[None]
  inside_rows = (rows >= boxes[:, 0]) & (rows < boxes[:, 2])
  inside_cols = (cols >= boxes[:, 1]) & (cols < boxes[:, 3])
  inside = inside_rows[:, :, None] & inside_cols[:, None, :]
  return jnp.where(inside[..., None], jnp.asarray(pixels, jnp.float32),
                   jnp.asarray(mean_rgb, jnp.float32))
