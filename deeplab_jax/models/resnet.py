"""ResNet v1 backbones (18, 34, 50, 101; 7x7 or "beta" stem) with an atrous output stride."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from deeplab_jax.models.layers import ConvBN, ModuleDef, max_pool, scaled_channels


class BasicBlock(nn.Module):
  """Two 3x3 convolutions and an identity (or 1x1 projection) shortcut: ResNet-18/34."""
  features: int
  stride: int = 1
  rate: int = 1
  conv: ModuleDef = ConvBN
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = self.conv
    y = conv(self.features, 3, self.rate, self.stride, name='conv1')(x)
    y = conv(self.features, 3, self.rate, activation=None, name='conv2')(y)
    if x.shape != y.shape:
      x = conv(self.features, 1, stride=self.stride, activation=None, name='shortcut')(x)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided, atrous), 1x1 expand by 4, and a shortcut: ResNet-50/101."""
  features: int
  stride: int = 1
  rate: int = 1
  conv: ModuleDef = ConvBN
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = self.conv
    y = conv(self.features, 1, name='conv1')(x)
    y = conv(self.features, 3, self.rate, self.stride, name='conv2')(y)
    y = conv(self.features * 4, 1, activation=None, name='conv3')(y)
    if x.shape != y.shape:
      x = conv(self.features * 4, 1, stride=self.stride, activation=None, name='shortcut')(x)
    return nn.relu(x + y)


RESNETS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


def atrous_schedule(stage_sizes: Sequence[int], output_stride: int, multi_grid: Sequence[int],
                    keep_rate_in_first_unit: bool = False) -> list[tuple[int, tuple[int, ...]]]:
  """(stride, rate of each unit) for every stage, given the output stride.

  Stages have nominal strides (1, 2, 2, 2) after the stride-4 stem. Once the output stride is
  reached, a stage's stride becomes 1 and its atrous rate grows by that stride instead. The last
  stage's unit rates are multiplied by `multi_grid` (DeepLab v3: OS 16 and (1, 2, 4) give rates
  (2, 4, 8)). With keep_rate_in_first_unit the first unit of a dilated stage keeps the previous
  stage's rate, as torchvision's `replace_stride_with_dilation` does.
  """
  if output_stride not in (8, 16, 32):
    raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride}')
  if len(multi_grid) != stage_sizes[-1]:
    raise ValueError(f'multi_grid {tuple(multi_grid)} needs one rate per unit of the last '
                     f'stage ({stage_sizes[-1]} units)')
  schedule, current_stride, rate = [], 4, 1
  for index, num_units in enumerate(stage_sizes):
    stride, previous_rate = (1 if index == 0 else 2), rate
    if current_stride * stride > output_stride:
      rate, stride = rate * stride, 1
    else:
      current_stride *= stride
    grid = multi_grid if index == len(stage_sizes) - 1 else (1,) * num_units
    rates = tuple((previous_rate if unit == 0 and keep_rate_in_first_unit else rate) * grid[unit]
                  for unit in range(num_units))
    schedule.append((stride, rates))
  return schedule


class ResNet(nn.Module):
  """ResNet v1 returning named features: 'stem' (stride 2), 'stage1' (4) ... 'stage4'.

  stem='standard' is one 7x7 stride-2 convolution; stem='beta' is three 3x3 convolutions
  (64, 64, 128 channels), DeepLab's resnet_v1_beta. width scales every channel count. With
  num_classes, an ImageNet-style classifier (global average pool, dense) adds 'logits'. conv
  is the ConvBN factory the model hands down (its BatchNorm and compute dtype).
  """
  depth: int = 50
  stem: str = 'standard'
  output_stride: int = 16
  multi_grid: Sequence[int] | None = None
  keep_rate_in_first_unit: bool = False
  width: float = 1.0
  num_classes: int | None = None
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    if self.depth not in RESNETS:
      raise ValueError(f'ResNet depth must be one of {sorted(RESNETS)}, got {self.depth}')
    block, stage_sizes = RESNETS[self.depth]
    channels = lambda c: scaled_channels(c, self.width)
    conv = self.conv
    if self.stem == 'standard':
      x = conv(channels(64), 7, stride=2, name='stem_conv')(x)
    elif self.stem == 'beta':
      x = conv(channels(64), 3, stride=2, name='stem_conv1')(x)
      x = conv(channels(64), 3, name='stem_conv2')(x)
      x = conv(channels(128), 3, name='stem_conv3')(x)
    else:
      raise ValueError(f"ResNet stem must be 'standard' or 'beta', got {self.stem!r}")
    features = {'stem': x}
    x = max_pool(x, 2)
    multi_grid = self.multi_grid or (1,) * stage_sizes[-1]
    schedule = atrous_schedule(stage_sizes, self.output_stride, multi_grid,
                               self.keep_rate_in_first_unit)
    for index, (stride, rates) in enumerate(schedule):
      for unit, rate in enumerate(rates):
        x = block(channels(64 * 2**index), stride if unit == 0 else 1, rate, conv,
                  name=f'stage{index + 1}_unit{unit + 1}')(x)
      features[f'stage{index + 1}'] = x
    if self.num_classes:
      features['logits'] = nn.Dense(self.num_classes, dtype=x.dtype, name='logits')(
          x.mean(axis=(1, 2)))
    return features
