"""Inference beyond one forward pass: multi-scale and flipped inputs, and sliding windows.

As in the official DeepLab, each scale's logits are resized back to the input size, turned into
softmax probabilities, and the probabilities of all scales and flips are averaged. Windows tile
an image larger than `window_size` with `window_stride`; overlapping logits are averaged.
With a `crf`, the averaged probabilities are refined by the dense CRF (`deeplab_jax.crf`) on the
RGB pixels. Every shape is static, so the whole thing compiles into one XLA program.

`make_predict_fn` is the one prediction of a model that evaluation, `predict` and `export` share;
`with_resizing` runs it on each image resized (TF DeepLab's and mmsegmentation's evaluation
protocols) and scores the probabilities resized back at the image's own size.
"""

from collections.abc import Callable, Sequence
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from deeplab_jax import crf as dense_crf
from deeplab_jax.models.layers import resize_bilinear
from deeplab_jax.models.normalization import boxes_from_sizes, fill_padding

LogitsFn = Callable[[jax.Array], jax.Array]  # NHWC images -> NHWC logits, same size.
RESIZE_MODES = ('long_side', 'short_side', 'fit_within', 'fit_box')


def frame_size(size: int, step: int) -> int:
  """The least k * `step` + 1 >= `size` with k >= 1: the frame an image of `size` pixels is
  padded to, so that features of output stride `step` line up with its corners."""
  return max(1, -(-(size - 1) // step)) * step + 1


def window_starts(size: int, window: int, stride: int) -> list[int]:
  """Start offsets of windows of `window` pixels every `stride` covering `size` pixels."""
  if size <= window:
    return [0]
  starts = list(range(0, size - window, stride))
  return starts + [size - window]  # The last window ends at the border.


def sliding_window_logits(logits_fn: LogitsFn, images: jax.Array, window_size: Sequence[int],
                          window_stride: Sequence[int]) -> jax.Array:
  """Logits of `images` from overlapping windows, averaged where they overlap.

  Images smaller than the window along an axis are seen whole along it. All windows go through
  `logits_fn` as one batch.
  """
  batch, height, width, _ = images.shape
  window_h, window_w = min(window_size[0], height), min(window_size[1], width)
  positions = [(top, left)
               for top in window_starts(height, window_h, window_stride[0])
               for left in window_starts(width, window_w, window_stride[1])]
  if len(positions) == 1:
    return logits_fn(images)
  crops = jnp.concatenate(
      [images[:, top:top + window_h, left:left + window_w] for top, left in positions])
  crop_logits = logits_fn(crops).astype(jnp.float32)
  num_classes = crop_logits.shape[-1]
  total = jnp.zeros((batch, height, width, num_classes), jnp.float32)
  count = jnp.zeros((1, height, width, 1), jnp.float32)
  for index, (top, left) in enumerate(positions):
    window_logits = crop_logits[index * batch:(index + 1) * batch]
    total = total.at[:, top:top + window_h, left:left + window_w].add(window_logits)
    count = count.at[:, top:top + window_h, left:left + window_w].add(1.0)
  return total / count


def predict_probabilities(logits_fn: LogitsFn, images: jax.Array, *,
                          scales: Sequence[float] = (1.0,), flip: bool = False,
                          window_size: Sequence[int] | None = None,
                          window_stride: Sequence[int] | None = None,
                          align_corners: bool = True, crf: dense_crf.CRFParams | None = None,
                          sizes: jax.Array | None = None) -> jax.Array:
  """[B, H, W, C] class probabilities averaged over `scales` and (with `flip`) mirror images.

  Each scale resizes the images (raw RGB pixels) bilinearly, runs `logits_fn` (through sliding
  windows when `window_size` is given), and resizes the logits back to H x W before the
  softmax. `crf` then refines them on the pixels; `sizes` ([B, 2] height, width) keeps the
  padding at the bottom and right of each image out of it.
  """
  size = images.shape[1:3]
  if window_size is not None:
    stride = window_stride or window_size
    run = lambda x: sliding_window_logits(logits_fn, x, window_size, stride)
  else:
    run = logits_fn
  total = 0.0
  for scale in scales:
    scaled_size = tuple(max(1, round(side * scale)) for side in size)
    scaled = resize_bilinear(images, scaled_size, align_corners)
    views = [(scaled, False)] + ([(scaled[:, :, ::-1], True)] if flip else [])
    for view, flipped in views:
      logits = run(view).astype(jnp.float32)
      if flipped:
        logits = logits[:, :, ::-1]
      logits = resize_bilinear(logits, size, align_corners)
      total = total + jax.nn.softmax(logits, axis=-1)
  probabilities = total / (len(scales) * (2 if flip else 1))
  if crf is not None:
    probabilities = dense_crf.dense_crf_batch(probabilities, images, crf, sizes)
  return probabilities


def predict(logits_fn: LogitsFn, images: jax.Array, **options) -> tuple[jax.Array, jax.Array]:
  """(int32 [B, H, W] class ids, [B, H, W, C] probabilities) of `predict_probabilities`."""
  probabilities = predict_probabilities(logits_fn, images, **options)
  return jnp.argmax(probabilities, axis=-1).astype(jnp.int32), probabilities


def crf_params(config: ml_collections.ConfigDict) -> dense_crf.CRFParams | None:
  """The dense CRF of `config.eval.crf_params` if `config.eval.crf`, else None."""
  if not config.eval.crf:
    return None
  fields = {field.name for field in dataclasses.fields(dense_crf.CRFParams)}
  unknown = sorted(set(config.eval.crf_params) - fields)
  if unknown:
    raise ValueError(f'config.eval.crf_params: unknown {unknown}; expected some of '
                     f'{sorted(fields)}')
  return dense_crf.CRFParams(**config.eval.crf_params)


def inference_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The keyword arguments of `predict_probabilities` that `config.eval` asks for."""
  return dict(scales=tuple(config.eval.scales), flip=config.eval.flip,
              window_size=config.eval.window_size, window_stride=config.eval.window_stride,
              align_corners=config.model.align_corners, crf=crf_params(config))


def make_predict_fn(model, config: ml_collections.ConfigDict) -> Callable:
  """predict(variables, images, sizes) -> (int32 [B, H, W] class ids, [B, H, W, C] probabilities).

  images: [B, H, W, 3] raw RGB pixels, each image at the top left with any padding after it;
  sizes: int32 [B, 2], each image's height and width. The padding becomes the model's mean pixel
  before anything reads it, as in training; then `config.eval`'s inference runs.
  """
  options = inference_options(config)

  def predict_fn(variables, images: jax.Array, sizes: jax.Array):
    pixels = fill_padding(images, boxes_from_sizes(sizes), model.normalization.mean_rgb)
    logits_fn = lambda x: model.apply(variables, x, train=False)
    return predict(logits_fn, pixels, sizes=sizes, **options)

  return predict_fn


def resized_sizes(sizes, mode: str, target: Sequence[int]) -> jax.Array:
  """int32 [..., 2] (height, width) of images of `sizes` resized with their aspect ratio kept.

  mode 'long_side' or 'short_side': that side becomes target[0] pixels (TF DeepLab evaluates
  ADE20K at a long side of 513). 'fit_within': the largest size whose long side is at most
  max(target) and short side at most min(target), whichever way the image is turned
  (mmsegmentation's keep-ratio Resize to (2048, 512)). 'fit_box': the largest size within
  target = (height, width), as the image stands. Sides round half up, to 1 at least.
  """
  sizes = jnp.asarray(sizes, jnp.float32)
  long_side, short_side = sizes.max(axis=-1), sizes.min(axis=-1)
  if mode == 'long_side':
    scale = target[0] / long_side
  elif mode == 'short_side':
    scale = target[0] / short_side
  elif mode == 'fit_within':
    scale = jnp.minimum(max(target) / long_side, min(target) / short_side)
  elif mode == 'fit_box':
    scale = jnp.minimum(target[0] / sizes[..., 0], target[1] / sizes[..., 1])
  else:
    raise ValueError(f'resize mode {mode!r}: expected one of {RESIZE_MODES}')
  return jnp.maximum(jnp.floor(sizes * scale[..., None] + 0.5), 1).astype(jnp.int32)


def _resize_axis_to_lengths(x: jax.Array, axis: int, lengths: jax.Array,
                            new_lengths: jax.Array, out_size: int,
                            align_corners: bool) -> jax.Array:
  """Along `axis` of NHWC `x`, image b's first lengths[b] entries linearly resampled to
  new_lengths[b] entries, in a frame of `out_size`; past them the last entry repeats."""
  old = lengths.astype(jnp.float32)[:, None]
  new = new_lengths.astype(jnp.float32)[:, None]
  position = jnp.minimum(jnp.arange(out_size, dtype=jnp.float32)[None], new - 1)
  if align_corners:
    source = position * (old - 1) / jnp.maximum(new - 1, 1)
  else:
    source = (position + 0.5) * old / new - 0.5
  source = jnp.clip(source, 0, old - 1)
  low = jnp.floor(source)
  fraction = source - low
  low = low.astype(jnp.int32)
  high = jnp.minimum(low + 1, lengths[:, None] - 1)
  shape = [x.shape[0]] + [1] * (x.ndim - 1)
  shape[axis] = out_size
  take = lambda index: jnp.take_along_axis(x, index.reshape(shape), axis=axis)
  fraction = fraction.reshape(shape)
  return take(low) * (1 - fraction) + take(high) * fraction


def resize_to_sizes(x: jax.Array, sizes: jax.Array, new_sizes: jax.Array,
                    frame: Sequence[int], align_corners: bool) -> jax.Array:
  """float32 [B, *frame, C]: each image's top-left `sizes` ([B, 2]) region of NHWC `x`
  bilinearly resized to its `new_sizes`, at the top left of the frame, the edge repeated after
  it. The sizes are traced: one program serves images of every size."""
  x = jnp.asarray(x, jnp.float32)
  sizes, new_sizes = jnp.asarray(sizes, jnp.int32), jnp.asarray(new_sizes, jnp.int32)
  for axis in (1, 2):
    x = _resize_axis_to_lengths(x, axis, sizes[:, axis - 1], new_sizes[:, axis - 1],
                                frame[axis - 1], align_corners)
  return x


def with_resizing(predict_fn: Callable, mode: str, target: Sequence[int],
                  frame: Sequence[int], align_corners: bool) -> Callable:
  """`predict_fn` (make_predict_fn's) run on each image resized by `resized_sizes(mode, target)`
  into a `frame` (which must hold them), with its probabilities resized back: the same
  signature and outputs, at the input's size, for scoring against the original labels."""

  def resized_predict_fn(variables, images: jax.Array, sizes: jax.Array):
    new_sizes = resized_sizes(sizes, mode, target)
    resized = resize_to_sizes(images, sizes, new_sizes, frame, align_corners)
    _, probabilities = predict_fn(variables, resized, new_sizes)
    probabilities = resize_to_sizes(probabilities, new_sizes, sizes, images.shape[1:3],
                                    align_corners)
    return jnp.argmax(probabilities, axis=-1).astype(jnp.int32), probabilities

  return resized_predict_fn
