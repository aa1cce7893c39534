"""VGG-16 (DeepLab v1's backbone) with an atrous output stride, and DeepLab-LargeFOV's fc6/fc7."""

import flax.linen as nn
import jax

from deeplab_jax.models.layers import (AtrousConv, ConvBN, ModuleDef, atrous_units, max_pool,
                                       scaled_channels)

STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, 3x3 convs) per stage.


class ConvReLU(nn.Module):
  """Atrous conv with a bias (or with BatchNorm) and ReLU: every layer of VGG-16 and LargeFOV."""
  features: int
  kernel_size: int = 3
  rate: int = 1
  batch_norm: bool = False
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.batch_norm:
      return self.conv(self.features, self.kernel_size, self.rate, name='conv')(x)
    x = AtrousConv(self.features, self.kernel_size, self.rate, use_bias=True, padding='SYMMETRIC',
                   dtype=x.dtype, name='conv')(x)
    return nn.relu(x)


class VGG16(nn.Module):
  """Five stages of 3x3 convolutions + ReLU, each followed by a 3x3 max pool; returns 'pool1' (at
  stride 2) ... 'pool5'.

  As in DeepLab v1, pools keep stride 1 past the output stride and later convolutions grow their
  atrous rate instead: at output stride 8, pool4 and pool5 have stride 1 and conv5 rate 2.
  batch_norm adds BatchNorm after each convolution (torchvision's vgg16_bn); otherwise the convs
  have biases, as in the original.
  """
  output_stride: int = 8
  batch_norm: bool = False
  width: float = 1.0
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    features = {}
    pools = atrous_units([2] * len(STAGES), self.output_stride)
    for stage, ((channels, num_convs), (pool_stride, rate)) in enumerate(zip(STAGES, pools),
                                                                          start=1):
      for index in range(1, num_convs + 1):
        x = ConvReLU(scaled_channels(channels, self.width), 3, rate, self.batch_norm, self.conv,
                     name=f'conv{stage}_{index}')(x)
      x = max_pool(x, pool_stride)
      features[f'pool{stage}'] = x
    return features


class LargeFOV(nn.Module):
  """fc6 as a 3x3 atrous convolution (rate 12 at output stride 8) and fc7 as a 1x1 one, each
  with ReLU and dropout: DeepLab-LargeFOV's field of view on top of VGG-16."""
  features: int = 1024
  rate: int = 12
  dropout_rate: float = 0.5
  batch_norm: bool = False
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for name, kernel_size, rate in (('fc6', 3, self.rate), ('fc7', 1, 1)):
      x = ConvReLU(self.features, kernel_size, rate, self.batch_norm, self.conv, name=name)(x)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x
