"""A backbone as a model of its own: what ImageNet weights are converted to and checked with."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.layers import ModuleDef, batch_norm


class Backbone(nn.Module):
  """NHWC images -> the backbone's named features (and 'logits' if it has a classifier).

  Its variables sit under 'backbone', as in a DeepLab model, so a DeepLab run can start from them.
  """
  backbone: ModuleDef
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
    norm = batch_norm(train, self.bn_momentum, self.bn_epsilon, self.dtype)
    return self.backbone(norm=norm, dtype=self.dtype, name='backbone')(images)
