"""Xception-41 and -65 as modified for DeepLab v3+ (aligned Xception), with an atrous output
stride. The two differ only in their number of middle-flow blocks (8 and 16)."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from deeplab_jax.models.layers import (ConvBN, ModuleDef, SeparableConvBN, atrous_units,
                                       scaled_channels)

# (name, channels of the three separable convs, stride, shortcut) of each block.
ENTRY_FLOW = (('entry_block1', (128, 128, 128), 2, 'conv'),
              ('entry_block2', (256, 256, 256), 2, 'conv'),
              ('entry_block3', (728, 728, 728), 2, 'conv'))
EXIT_FLOW = (('exit_block1', (728, 1024, 1024), 2, 'conv'),
             ('exit_block2', (1536, 1536, 2048), 1, 'none'))


def xception_blocks(middle_blocks: int) -> tuple:
  """Every block of the Xception with `middle_blocks` middle-flow blocks, input to output."""
  middle_flow = tuple((f'middle_block{index}', (728, 728, 728), 1, 'sum')
                      for index in range(1, middle_blocks + 1))
  return ENTRY_FLOW + middle_flow + EXIT_FLOW


class XceptionBlock(nn.Module):
  """Three separable convolutions, the last one strided, and a shortcut.

  shortcut is 'conv' (1x1 strided conv + BN), 'sum' (identity) or 'none'. As in TF DeepLab,
  blocks with a shortcut apply ReLU before each separable conv and none after its pointwise
  conv; the last block ('none') applies ReLU after each. Returns the output and the second
  conv's output (the decoder's low-level feature in entry block 2).
  """
  features: Sequence[int]
  stride: int = 1
  rate: int = 1
  shortcut: str = 'conv'
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    if self.shortcut not in ('conv', 'sum', 'none'):
      raise ValueError(f"shortcut must be 'conv', 'sum' or 'none', got {self.shortcut!r}")
    pre_activation = self.shortcut != 'none'
    y = x
    for index, features in enumerate(self.features):
      if pre_activation:
        y = nn.relu(y)
      y = SeparableConvBN(features, self.rate, self.stride if index == 2 else 1,
                          activation=None if pre_activation else nn.relu, conv=self.conv,
                          name=f'separable_conv{index + 1}')(y)
      if index == 1:
        hidden = y
    if self.shortcut == 'conv':
      y = y + self.conv(self.features[-1], 1, stride=self.stride, activation=None,
                        name='shortcut')(x)
    elif self.shortcut == 'sum':
      y = y + x
    return y, hidden


class Xception(nn.Module):
  """DeepLab v3+'s Xception: a two-conv stem (stride 2), entry flow (to stride 16),
  `middle_blocks` middle blocks (16: Xception-65, 8: Xception-41), exit flow (to stride 32);
  separable convolutions stride instead of max pooling.

  Returns 'stem', 'low_level' (entry block 2's second conv, stride 4), 'entry_flow',
  'middle_flow' and 'exit_flow'. width scales every channel count.
  """
  output_stride: int = 16
  width: float = 1.0
  middle_blocks: int = 16
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    channels = lambda c: scaled_channels(c, self.width)
    x = self.conv(channels(32), 3, stride=2, name='stem_conv1')(x)
    x = self.conv(channels(64), 3, name='stem_conv2')(x)
    features = {'stem': x}
    blocks = xception_blocks(self.middle_blocks)
    flow_ends = {'entry_block3': 'entry_flow', f'middle_block{self.middle_blocks}': 'middle_flow',
                 'exit_block2': 'exit_flow'}
    units = atrous_units([stride for _, _, stride, _ in blocks], self.output_stride,
                         input_stride=2)
    for (name, depths, _, shortcut), (stride, rate) in zip(blocks, units):
      x, hidden = XceptionBlock(tuple(map(channels, depths)), stride, rate, shortcut, self.conv,
                                name=name)(x)
      if name == 'entry_block2':
        features['low_level'] = hidden
      if name in flow_ends:
        features[flow_ends[name]] = x
    return features
