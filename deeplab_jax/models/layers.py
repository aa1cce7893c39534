"""Building blocks: atrous convolution, convolution + BatchNorm + ReLU, and bilinear resizing."""

from collections.abc import Callable, Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

ModuleDef = Any
he_normal = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def symmetric_padding(kernel_size: int, rate: int) -> tuple[int, int]:
  """Padding of a dilated kernel that is equal on both sides whatever the stride.

  This is TF DeepLab's `conv2d_same` and torchvision's `padding=dilation`; XLA's 'SAME' instead
  pads one more pixel at the end when the stride is 2 and the input size even.
  """
  total = (kernel_size - 1) * rate
  return total // 2, total - total // 2


class AtrousConv(nn.Module):
  """2-D convolution with an atrous rate: `lax.conv_general_dilated` with rhs_dilation=(rate, rate).

  NHWC inputs, HWIO kernel. padding is 'SAME' (XLA's) or 'SYMMETRIC' (see `symmetric_padding`);
  the two agree for stride 1 and odd kernel sizes.
  """
  features: int
  kernel_size: int = 3
  rate: int = 1
  stride: int = 1
  use_bias: bool = False
  padding: str = 'SAME'
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = he_normal

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if self.padding == 'SAME':
      padding = 'SAME'
    elif self.padding == 'SYMMETRIC':
      padding = [symmetric_padding(k, self.rate)] * 2
    else:
      raise ValueError(f"padding must be 'SAME' or 'SYMMETRIC', got {self.padding!r}")
    y = lax.conv_general_dilated(
        x, kernel, window_strides=(self.stride, self.stride), padding=padding,
        rhs_dilation=(self.rate, self.rate), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias if bias is not None else y


class ConvBN(nn.Module):
  """AtrousConv (no bias) -> BatchNorm -> optional ReLU, the unit every DeepLab part is made of."""
  features: int
  kernel_size: int = 3
  rate: int = 1
  stride: int = 1
  relu: bool = True
  norm: ModuleDef = nn.BatchNorm
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = AtrousConv(self.features, self.kernel_size, self.rate, self.stride, padding='SYMMETRIC',
                   dtype=self.dtype, name='conv')(x)
    x = self.norm(name='bn')(x)
    return nn.relu(x) if self.relu else x


def batch_norm(train: bool, momentum: float, epsilon: float, dtype: Any) -> ModuleDef:
  """BatchNorm factory: batch statistics when training, running averages otherwise.

  Under `jax.jit` over a batch-sharded global array the batch statistics are reduced over the
  whole global batch, i.e. cross-replica BatchNorm, with no axis names needed.
  """
  return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=momentum,
                           epsilon=epsilon, dtype=dtype)


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
  """Bilinearly resizes NHWC `x` to spatial `size` as two small matmuls (TPU friendly)."""
  (in_h, in_w), (out_h, out_w) = x.shape[1:3], tuple(size)
  if (in_h, in_w) == (out_h, out_w):
    return x
  rows = jnp.asarray(interpolation_matrix(in_h, out_h, align_corners), x.dtype)
  cols = jnp.asarray(interpolation_matrix(in_w, out_w, align_corners), x.dtype)
  x = jnp.einsum('oh,nhwc->nowc', rows, x, precision=lax.Precision.HIGHEST)
  return jnp.einsum('pw,nowc->nopc', cols, x, precision=lax.Precision.HIGHEST)
