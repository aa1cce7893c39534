"""The DeepLab v3+ decoder: refine the ASPP output with stride-4 backbone features."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.layers import ConvBN, ModuleDef, SeparableConvBN, resize_bilinear


class Decoder(nn.Module):
  """Project low-level features to 48 channels, concat with the upsampled ASPP output, 2 x 3x3.

  `separable` makes the two 3x3 convolutions separable ones, as in the Xception model zoo.
  """
  low_level_features: int = 48
  features: int = 256
  align_corners: bool = True
  separable: bool = False
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array, low_level: jax.Array) -> jax.Array:
    low_level = self.conv(self.low_level_features, 1, name='low_level_projection')(low_level)
    x = resize_bilinear(x, low_level.shape[1:3], self.align_corners).astype(low_level.dtype)
    x = jnp.concatenate([x, low_level], axis=-1)
    for name in ('conv1', 'conv2'):
      x = (SeparableConvBN(self.features, conv=self.conv, name=name)(x)
           if self.separable else self.conv(self.features, 3, name=name)(x))
    return x
