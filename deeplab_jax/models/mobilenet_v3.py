"""MobileNetV3-Large and -Small (Howard et al. 2019, "Searching for MobileNetV3") with an atrous
output stride: inverted residuals with squeeze-and-excitation and hard-swish."""

from collections.abc import Callable
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.layers import AtrousConv, ConvBN, ModuleDef, atrous_units
from deeplab_jax.models.mobilenet_v2 import make_divisible

# One row per inverted residual unit, from the paper's Tables 1 and 2: (kernel size, expanded
# channels, output channels, squeeze-and-excitation, hard-swish (else ReLU), stride).
UNITS = {
    'large': ((3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2),
              (3, 72, 24, False, False, 1), (5, 72, 40, True, False, 2),
              (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
              (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1),
              (3, 184, 80, False, True, 1), (3, 184, 80, False, True, 1),
              (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
              (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1),
              (5, 960, 160, True, True, 1)),
    'small': ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2),
              (3, 88, 24, False, False, 1), (5, 96, 40, True, True, 2),
              (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
              (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1),
              (5, 288, 96, True, True, 2), (5, 576, 96, True, True, 1),
              (5, 576, 96, True, True, 1)),
}
STEM_CHANNELS = 16
# The BatchNorm epsilon of MobileNetV3's own layers (torchvision's and TF's); heads on it keep
# the model's.
BN_EPSILON = 1e-3


class SqueezeExcitation(nn.Module):
  """Channel attention: global average -> 1x1 conv + ReLU -> 1x1 conv + hard sigmoid, which
  scales the input's channels."""
  squeeze_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.relu(AtrousConv(self.squeeze_features, 1, use_bias=True, dtype=x.dtype,
                           name='reduce')(s))
    s = AtrousConv(x.shape[-1], 1, use_bias=True, dtype=x.dtype, name='expand')(s)
    return x * nn.hard_sigmoid(s)


class InvertedResidual(nn.Module):
  """1x1 expansion (unless `expanded` is the input's width), depthwise k x k (strided, atrous),
  squeeze-and-excitation to a quarter of the channels, linear 1x1 projection, and an identity
  shortcut if `residual`."""
  features: int
  expanded: int
  kernel_size: int
  squeeze_excite: bool
  activation: Callable[[jax.Array], jax.Array]
  stride: int = 1
  rate: int = 1
  residual: bool = False
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = x
    if self.expanded != x.shape[-1]:
      y = self.conv(self.expanded, 1, activation=self.activation, name='expand')(y)
    y = self.conv(self.expanded, self.kernel_size, self.rate, self.stride, groups=self.expanded,
                  activation=self.activation, name='depthwise')(y)
    if self.squeeze_excite:
      y = SqueezeExcitation(make_divisible(self.expanded // 4), name='squeeze_excite')(y)
    y = self.conv(self.features, 1, activation=None, name='project')(y)
    return x + y if self.residual else y


class MobileNetV3(nn.Module):
  """MobileNetV3 up to its last 1x1 conv (6x the last units' channels: 960 for 'large', 576 for
  'small'), without the ImageNet classifier after it.

  Returns 'stem' (stride 2), 'unit1' ... 'unitN' (the rows of UNITS; unit i is torchvision's
  `features[i]`) and 'final'. Units past the output stride give up their stride for an atrous
  rate, the first of them already at the grown rate: torchvision's `dilated=True` at output
  stride 16. A shortcut joins units of nominal stride 1 that keep their width. width multiplies
  every channel count (rounded to multiples of 8).
  """
  variant: str = 'large'
  output_stride: int = 16
  width: float = 1.0
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    conv = functools.partial(self.conv, epsilon=BN_EPSILON)
    channels = lambda count: make_divisible(count * self.width)
    x = conv(channels(STEM_CHANNELS), 3, stride=2, activation=nn.hard_swish, name='stem_conv')(x)
    features = {'stem': x}
    rows = UNITS[self.variant]
    units = atrous_units([row[-1] for row in rows], self.output_stride, input_stride=2,
                         keep_rate_in_first_unit=False)
    for index, (row, (stride, rate)) in enumerate(zip(rows, units), start=1):
      kernel_size, expanded, out, squeeze_excite, hard_swish, nominal_stride = row
      x = InvertedResidual(
          channels(out), channels(expanded), kernel_size, squeeze_excite,
          nn.hard_swish if hard_swish else nn.relu, stride, rate,
          residual=nominal_stride == 1 and x.shape[-1] == channels(out), conv=conv,
          name=f'unit{index}')(x)
      features[f'unit{index}'] = x
    features['final'] = conv(6 * x.shape[-1], 1, activation=nn.hard_swish, name='final_conv')(x)
    return features
