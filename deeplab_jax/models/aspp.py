"""Atrous Spatial Pyramid Pooling (DeepLab v3): parallel atrous branches plus image pooling."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.layers import ConvBN, ModuleDef, SeparableConvBN


class ASPP(nn.Module):
  """1x1 branch, one 3x3 branch per atrous rate, image pooling; concat, 1x1 projection, dropout.

  Every branch is conv + BatchNorm + ReLU; `separable` makes the atrous branches separable
  convolutions (DeepLab v3+ with Xception). With no rates this is the mobile head of the model
  zoo (1x1 branch and image pooling only).
  """
  features: int = 256
  atrous_rates: Sequence[int] = (6, 12, 18)
  dropout_rate: float = 0.1
  separable: bool = False
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    branches = [self.conv(self.features, 1, name='conv1x1')(x)]
    for index, rate in enumerate(self.atrous_rates):
      name = f'atrous{index + 1}'
      branches.append(
          SeparableConvBN(self.features, rate, conv=self.conv, name=name)(x)
          if self.separable else self.conv(self.features, 3, rate, name=name)(x))
    pooled = self.conv(self.features, 1, name='image_pooling')(
        jnp.mean(x, axis=(1, 2), keepdims=True))
    branches.append(jnp.broadcast_to(pooled, x.shape[:3] + (self.features,)))
    x = self.conv(self.features, 1, name='projection')(jnp.concatenate(branches, axis=-1))
    return nn.Dropout(self.dropout_rate, deterministic=not train)(x)
