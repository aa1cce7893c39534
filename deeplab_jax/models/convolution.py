"""2-D (atrous) convolution as XLA's `conv_general_dilated` computes it, only faster.

Everywhere: kernel taps that can only ever read padding are dropped (an atrous rate at least
the feature map's size leaves a 3x3 kernel its centre tap: a 1x1 convolution), which is exact.

On CPU, where XLA's convolutions trail oneDNN's, convolutions become matmuls where that pays:
- a 1x1 convolution is a matmul of (pixels, channels) by the kernel;
- a convolution whose taps mostly read padding (large atrous rates: ASPP's rate 36 on a 41x41
  map reads the image in 1.55 of its 9 taps' worth of positions) is a sum of matmuls, one per
  tap, over the outputs where that tap reads the image;
- a depthwise convolution (MobileNet's, Xception's: a filter per channel) is a sum over its taps
  of a strided slice of the padded input times the tap's weights, which XLA:CPU runs 25-45 times
  faster than its grouped convolution (3x3 on 1 x 257 x 257 x 32 to 1 x 33 x 33 x 576).
Other dense convolutions keep XLA's: with jaxlib 0.10's YNNPACK its gradients are 1.03-1.9 times
faster than per-tap matmuls. TPU and GPU keep XLA's convolution (`lax.platform_dependent`), and
so do other grouped convolutions, and small dense ones (under `MATMUL_MIN_MACS`: slicing per tap
does not pay there, and it compiles slower). Exports that other compilers read (LiteRT, ONNX)
trace under `portable.forms()`, which keeps XLA's convolution everywhere.
"""

import functools
import math

import jax
from jax import lax
import jax.numpy as jnp

from deeplab_jax.models import portable

DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
SPARSE_TAPS = 0.9  # Below this share of tap reads inside the image, the per-tap matmuls win.
MATMUL_MIN_MACS = 2 ** 24  # Multiply-adds per call below which XLA:CPU's convolution is kept.
Padding = tuple[tuple[int, int], tuple[int, int]]


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: str | Padding, rate: int,
           groups: int = 1) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (stride, stride), padding, rhs_dilation=(rate, rate),
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)`."""
  strides, rates = (stride, stride), (rate, rate)
  if isinstance(padding, str):
    padding = tuple(lax.padtype_to_pads(x.shape[1:3], dilated_shape(kernel.shape[:2], rates),
                                        strides, padding))
  kernel, padding = drop_padding_taps(kernel, x.shape[1:3], strides, padding, rates)
  native = functools.partial(xla_conv, strides=strides, padding=padding, rates=rates,
                             groups=groups)
  out_size = tuple(output_size(*args)
                   for args in zip(x.shape[1:3], kernel.shape[:2], strides, padding, rates))
  depthwise = groups == x.shape[-1] == kernel.shape[-1]
  macs = x.shape[0] * math.prod(out_size) * kernel.size
  if portable.active() or (not depthwise and (groups != 1 or macs < MATMUL_MIN_MACS)):
    return native(x, kernel)
  spans = tap_spans(x.shape[1:3], kernel.shape[:2], strides, padding, rates)
  if depthwise:
    cpu = functools.partial(depthwise_tap_conv, strides=strides, padding=padding, rates=rates,
                            out_size=out_size)
  elif kernel.shape[:2] == (1, 1) and padding == ((0, 0), (0, 0)):
    cpu = functools.partial(pointwise_conv, strides=strides)
  elif live_share(spans, kernel.shape[:2], out_size) < SPARSE_TAPS:
    cpu = functools.partial(tap_matmul_conv, strides=strides, spans=spans, out_size=out_size)
  else:
    return native(x, kernel)
  return lax.platform_dependent(x, kernel, cpu=cpu, default=native)


def dilated_shape(kernel_shape, rates) -> tuple[int, int]:
  return tuple((k - 1) * r + 1 for k, r in zip(kernel_shape, rates))


def output_size(length: int, taps: int, stride: int, padding: tuple[int, int], rate: int) -> int:
  return (length + sum(padding) - (taps - 1) * rate - 1) // stride + 1


def axis_spans(length, taps, stride, padding, rate) -> tuple[tuple[int, int, int] | None, ...]:
  """Per tap along one axis: (first output, end output, first input) of the outputs at which
  the tap reads the image rather than padding; None if there is none."""
  outputs = output_size(length, taps, stride, padding, rate)
  spans = []
  for tap in range(taps):
    offset = tap * rate - padding[0]
    first = max(0, math.ceil(-offset / stride))
    end = min(outputs, math.ceil((length - offset) / stride))
    spans.append((first, end, first * stride + offset) if first < end else None)
  return tuple(spans)


def tap_spans(size, kernel_size, strides, padding, rates):
  return tuple(axis_spans(*args) for args in zip(size, kernel_size, strides, padding, rates))


def live_share(spans, kernel_size, out_size) -> float:
  """The share of the taps' reads, over all outputs, that fall inside the image."""
  share = 1.0
  for axis_span, taps, outputs in zip(spans, kernel_size, out_size):
    share *= sum(end - first for first, end, _ in filter(None, axis_span)) / (taps * outputs)
  return share


def drop_padding_taps(kernel: jax.Array, size, strides, padding: Padding,
                      rates) -> tuple[jax.Array, Padding]:
  """(kernel, padding) without the kernel rows and columns that only ever meet padding."""
  new_padding = []
  for axis, (length, stride, (low, high), rate) in enumerate(zip(size, strides, padding, rates)):
    taps = kernel.shape[axis]
    live = [tap for tap, span in enumerate(axis_spans(length, taps, stride, (low, high), rate))
            if span is not None]
    first, last = live[0], live[-1]
    new_low, new_high = low - first * rate, high - (taps - 1 - last) * rate
    if new_low < 0 or new_high < 0:  # Only cropping could drop them: keep them.
      first, last, new_low, new_high = 0, taps - 1, low, high
    kernel = lax.slice_in_dim(kernel, first, last + 1, axis=axis)
    new_padding.append((new_low, new_high))
  return kernel, tuple(new_padding)


def xla_conv(x, kernel, strides, padding, rates, groups=1):
  return lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=rates,
                                  dimension_numbers=DIMENSIONS, feature_group_count=groups)


def matmul(x: jax.Array, matrix: jax.Array, result_dtype=None) -> jax.Array:
  """NHWC `x` times a [channels, features] matrix, as one 2-D matmul."""
  product = lax.dot_general(x.reshape(-1, x.shape[-1]), matrix, (((1,), (0,)), ((), ())),
                            preferred_element_type=result_dtype)
  return product.reshape(*x.shape[:3], matrix.shape[-1])


def pointwise_conv(x, kernel, strides):
  """A 1x1 convolution without padding as a matmul."""
  return matmul(x[:, ::strides[0], ::strides[1]], kernel[0, 0])


def tap_inputs(x, strides, span_h, span_w) -> jax.Array:
  """The input pixels one tap reads at the outputs of its spans (see `axis_spans`)."""
  (first_h, end_h, start_h), (first_w, end_w, start_w) = span_h, span_w
  return lax.slice(x, (0, start_h, start_w, 0),
                   (x.shape[0], start_h + (end_h - first_h - 1) * strides[0] + 1,
                    start_w + (end_w - first_w - 1) * strides[1] + 1, x.shape[3]),
                   (1, strides[0], strides[1], 1))


def tap_matmul_conv(x, kernel, strides, spans, out_size):
  """The convolution as a sum of matmuls, one per tap, each over the outputs where that tap
  reads the image; JAX differentiates it into matmuls too."""
  out = jnp.zeros((x.shape[0], *out_size, kernel.shape[-1]), jnp.float32)
  for i, span_h in enumerate(spans[0]):
    for j, span_w in enumerate(spans[1]):
      if span_h is not None and span_w is not None:
        out = out.at[:, span_h[0]:span_h[1], span_w[0]:span_w[1]].add(
            matmul(tap_inputs(x, strides, span_h, span_w), kernel[i, j], jnp.float32))
  return out.astype(x.dtype)


def depthwise_tap_conv(x, kernel, strides, padding, rates, out_size):
  """A depthwise convolution (kernel [h, w, 1, C]) as the sum over its taps of the padded input's
  strided slice that the tap reads, times the tap's C weights; accumulated in float32."""
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out = jnp.zeros((x.shape[0], *out_size, x.shape[3]), jnp.float32)
  for i in range(kernel.shape[0]):
    for j in range(kernel.shape[1]):
      start = (0, i * rates[0], j * rates[1], 0)
      end = (x.shape[0], start[1] + (out_size[0] - 1) * strides[0] + 1,
             start[2] + (out_size[1] - 1) * strides[1] + 1, x.shape[3])
      window = lax.slice(x, start, end, (1, *strides, 1))
      out = out + window.astype(jnp.float32) * kernel[i, j, 0].astype(jnp.float32)
  return out.astype(x.dtype)
