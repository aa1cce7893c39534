"""MobileNetV2 (inverted residuals with linear bottlenecks) with an atrous output stride."""

import flax.linen as nn
import jax

from deeplab_jax.models.layers import ConvBN, ModuleDef, atrous_units

# (expansion, channels, units, stride) of each stage, from the MobileNetV2 paper.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
  """`value` rounded to a multiple of `divisor`, never more than 10% below it (as in TF)."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
  """1x1 expansion + ReLU6, 3x3 depthwise (strided, atrous) + ReLU6, linear 1x1 projection, and
  an identity shortcut when the shape allows."""
  features: int
  expansion: int
  stride: int = 1
  rate: int = 1
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = self.conv
    hidden = make_divisible(x.shape[-1] * self.expansion)
    y = x
    if self.expansion != 1:
      y = conv(hidden, 1, activation=nn.relu6, name='expand')(y)
    y = conv(hidden, 3, self.rate, self.stride, groups=hidden, activation=nn.relu6,
             name='depthwise')(y)
    y = conv(self.features, 1, activation=None, name='project')(y)
    return x + y if x.shape == y.shape else y


class MobileNetV2(nn.Module):
  """MobileNetV2 without its final 1x1 conv and classifier, as DeepLab uses it.

  Returns 'stem' (stride 2) and 'stage1' ... 'stage7' (the rows of the paper's table; 'stage2'
  is at stride 4, 'stage7' is the 320-channel output). width is the depth multiplier.
  """
  output_stride: int = 16
  width: float = 1.0
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    x = self.conv(make_divisible(32 * self.width), 3, stride=2, activation=nn.relu6,
                  name='stem_conv')(x)
    features = {'stem': x}
    strides = [stride if unit == 0 else 1
               for _, _, num_units, stride in STAGES for unit in range(num_units)]
    units = iter(atrous_units(strides, self.output_stride, input_stride=2))
    for index, (expansion, channels, num_units, _) in enumerate(STAGES, start=1):
      for unit in range(1, num_units + 1):
        stride, rate = next(units)
        x = InvertedResidual(make_divisible(channels * self.width), expansion, stride, rate,
                             self.conv, name=f'stage{index}_unit{unit}')(x)
      features[f'stage{index}'] = x
    return features
