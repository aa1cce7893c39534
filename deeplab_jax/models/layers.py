"""Building blocks: atrous (and depthwise) convolution, convolution + BatchNorm + activation,
separable convolution, max pooling and bilinear resizing."""

from collections.abc import Callable, Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from deeplab_jax.models import portable
from deeplab_jax.models.batch_norm import BatchNorm
from deeplab_jax.models.convolution import conv2d

ModuleDef = Any
he_normal = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def scaled_channels(channels: int, width: float) -> int:
  """`channels` times a width multiplier, rounded, at least 1."""
  return max(1, round(channels * width))


def symmetric_padding(kernel_size: int, rate: int) -> tuple[int, int]:
  """Padding of a dilated kernel that is equal on both sides whatever the stride.

  This is TF DeepLab's `conv2d_same` and torchvision's `padding=dilation`; XLA's 'SAME' instead
  pads one more pixel at the end when the stride is 2 and the input size even.
  """
  total = (kernel_size - 1) * rate
  return total // 2, total - total // 2


def max_pool(x: jax.Array, stride: int) -> jax.Array:
  """3x3 max pooling with one pixel of padding, which never wins: the ResNet stem's and VGG's.

  Not `nn.max_pool`, which ONNX's exporter replaces with a form that takes no explicit padding.
  Under `portable.forms()` it is the maximum of the nine shifted slices of the edge-padded input
  (an edge pixel is in every window its copy is, so the result is the same).
  """
  padding = ((0, 0), (1, 1), (1, 1), (0, 0))
  if not portable.active():
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), padding)
  padded = jnp.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
  padded = jnp.concatenate([padded[:, :, :1], padded, padded[:, :, -1:]], axis=2)
  height, width = ((size - 1) // stride + 1 for size in x.shape[1:3])
  return functools.reduce(jnp.maximum, [
      padded[:, i:i + (height - 1) * stride + 1:stride, j:j + (width - 1) * stride + 1:stride]
      for i in range(3) for j in range(3)])


class AtrousConv(nn.Module):
  """2-D convolution with an atrous rate: `lax.conv_general_dilated` with rhs_dilation=(rate, rate)
  (computed by `convolution.conv2d`).

  NHWC inputs, HWIO kernel. padding is 'SAME' (XLA's) or 'SYMMETRIC' (see `symmetric_padding`);
  the two agree for stride 1 and odd kernel sizes. groups > 1 splits the channels into groups
  convolved separately; groups == input channels == features is a depthwise convolution.
  A per-channel `output_scale` and `output_shift` (an inference BatchNorm after it) fold into
  the kernel and the bias.
  """
  features: int
  kernel_size: int = 3
  rate: int = 1
  stride: int = 1
  groups: int = 1
  use_bias: bool = False
  padding: str = 'SAME'
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = he_normal

  @nn.compact
  def __call__(self, x: jax.Array, output_scale: jax.Array | None = None,
               output_shift: jax.Array | None = None) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1] // self.groups, self.features),
                        self.param_dtype)
    bias = (self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
            if self.use_bias else None)
    if output_scale is not None:
      kernel = kernel * output_scale
      bias = bias * output_scale if bias is not None else None
    if output_shift is not None:
      bias = bias + output_shift if bias is not None else output_shift
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if self.padding == 'SAME':
      padding = 'SAME'
    elif self.padding == 'SYMMETRIC':
      padding = (symmetric_padding(k, self.rate),) * 2
    else:
      raise ValueError(f"padding must be 'SAME' or 'SYMMETRIC', got {self.padding!r}")
    y = conv2d(x, kernel, self.stride, padding, self.rate, self.groups)
    return y + bias if bias is not None else y


class ConvBN(nn.Module):
  """AtrousConv (no bias) -> BatchNorm -> activation, the unit every DeepLab part is made of.

  In training BatchNorm uses the batch's statistics; at inference its running averages fold
  into the convolution's kernel and bias.
  """
  features: int
  kernel_size: int = 3
  rate: int = 1
  stride: int = 1
  groups: int = 1
  activation: Callable[[jax.Array], jax.Array] | None = nn.relu
  train: bool = False
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = AtrousConv(self.features, self.kernel_size, self.rate, self.stride, self.groups,
                      padding='SYMMETRIC', dtype=self.dtype, name='conv')
    norm = BatchNorm(self.features, self.momentum, self.epsilon, name='bn')
    x = norm(conv(x)) if self.train else conv(x, *norm.affine())
    return self.activation(x) if self.activation else x


class SeparableConvBN(nn.Module):
  """Depthwise 3x3 (atrous, strided) conv + BN + ReLU, then pointwise 1x1 conv + BN + activation.

  DeepLab v3+'s separable convolution (Xception, and optionally ASPP and the decoder): the
  MobileNet design with BatchNorm and ReLU after the depthwise convolution as well.
  """
  features: int
  rate: int = 1
  stride: int = 1
  activation: Callable[[jax.Array], jax.Array] | None = nn.relu
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    x = self.conv(channels, 3, self.rate, self.stride, groups=channels, name='depthwise')(x)
    return self.conv(self.features, 1, activation=self.activation, name='pointwise')(x)


def conv_bn_factory(train: bool, momentum: float, epsilon: float, dtype: Any) -> ModuleDef:
  """`ConvBN` with its BatchNorm and compute dtype bound: what a model hands down to its parts."""
  return functools.partial(ConvBN, train=train, momentum=momentum, epsilon=epsilon, dtype=dtype)


@functools.lru_cache(maxsize=64)
def interpolation_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
  """[out_size, in_size] matrix of linear interpolation weights along one axis.

  align_corners=True maps the corner pixels onto each other (TF DeepLab's convention, the reason
  for crop sizes k * output_stride + 1); False uses half-pixel centres (PyTorch, `jax.image`).
  """
  out = np.arange(out_size, dtype=np.float64)
  if align_corners:
    src = out * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros_like(out)
  else:
    src = np.clip((out + 0.5) * (in_size / out_size) - 0.5, 0, in_size - 1)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = src - lo
  matrix = np.zeros((out_size, in_size), np.float32)
  np.add.at(matrix, (np.arange(out_size), lo), 1 - frac)
  np.add.at(matrix, (np.arange(out_size), hi), frac)
  return matrix


def resize_bilinear(x: jax.Array, size: Sequence[int], align_corners: bool = True) -> jax.Array:
  """Bilinearly resizes NHWC `x` to spatial `size`, one axis at a time.

  With align_corners and an output of (input - 1) * k + 1 pixels (DeepLab's k * stride + 1
  crops) an axis is upsampled by blending neighbour pairs with k fixed weights, a few flops per
  output pixel; otherwise by a small matmul with `interpolation_matrix` (TPU friendly).
  """
  for axis, out_size in ((1, size[0]), (2, size[1])):
    x = resize_axis(x, axis, out_size, align_corners)
  return x


def resize_axis(x: jax.Array, axis: int, out_size: int, align_corners: bool) -> jax.Array:
  """`x` linearly resampled along `axis` (1 or 2 of NHWC) to `out_size` (see resize_bilinear)."""
  in_size = x.shape[axis]
  if in_size == out_size:
    return x
  if align_corners and in_size > 1 and (out_size - 1) % (in_size - 1) == 0:
    factor = (out_size - 1) // (in_size - 1)
    weights = jnp.arange(factor, dtype=x.dtype) / factor
    weights = weights.reshape((factor,) + (1,) * (x.ndim - axis - 1))
    first = lax.slice_in_dim(x, 0, in_size - 1, axis=axis)
    second = lax.slice_in_dim(x, 1, in_size, axis=axis)
    blended = (jnp.expand_dims(first, axis + 1) * (1 - weights) +
               jnp.expand_dims(second, axis + 1) * weights)
    shape = x.shape[:axis] + ((in_size - 1) * factor,) + x.shape[axis + 1:]
    last = lax.slice_in_dim(x, in_size - 1, in_size, axis=axis)
    return jnp.concatenate([blended.reshape(shape), last], axis=axis)
  matrix = jnp.asarray(interpolation_matrix(in_size, out_size, align_corners), x.dtype)
  equation = 'oh,nhwc->nowc' if axis == 1 else 'ow,nhwc->nhoc'
  return jnp.einsum(equation, matrix, x, precision=lax.Precision.HIGHEST)


def atrous_units(strides: Sequence[int], output_stride: int, input_stride: int = 1,
                 keep_rate_in_first_unit: bool = True) -> list[tuple[int, int]]:
  """(stride, atrous rate) of each unit with nominal `strides`, capped at `output_stride`.

  TF DeepLab's rule for Xception and MobileNet: once the output stride is reached a unit keeps
  stride 1 and every later unit's rate grows by the stride it gave up; the unit that gives it up
  still uses the rate before it, or already the grown one if not keep_rate_in_first_unit
  (torchvision's MobileNetV3 `dilated=True`). `input_stride` is the stride of the units' input.
  """
  if output_stride not in (8, 16, 32):
    raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride}')
  units, current_stride, rate = [], input_stride, 1
  for stride in strides:
    if current_stride * stride > output_stride:
      previous_rate, rate = rate, rate * stride
      units.append((1, previous_rate if keep_rate_in_first_unit else rate))
    else:
      units.append((stride, rate))
      current_stride *= stride
  return units
