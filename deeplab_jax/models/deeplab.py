"""DeepLab v3 (backbone -> ASPP -> classifier) and v3+ (with the decoder), assembled from parts."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.layers import AtrousConv, ModuleDef, batch_norm, resize_bilinear


class DeepLab(nn.Module):
  """Semantic segmentation: NHWC float images -> NHWC logits at the input resolution.

  backbone, aspp and decoder are module factories (e.g. `functools.partial(ResNet, depth=50)`)
  that receive the BatchNorm factory and compute dtype here; decoder=None gives DeepLab v3.
  """
  num_classes: int
  backbone: ModuleDef
  aspp: ModuleDef
  decoder: ModuleDef | None = None
  low_level_feature: str = 'stage1'
  final_feature: str = 'stage4'
  align_corners: bool = True
  bn_momentum: float = 0.9997
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    parts = dict(norm=batch_norm(train, self.bn_momentum, self.bn_epsilon, self.dtype),
                 dtype=self.dtype)
    features = self.backbone(**parts, name='backbone')(images)
    x = self.aspp(**parts, name='aspp')(features[self.final_feature], train)
    if self.decoder is not None:
      x = self.decoder(**parts, name='decoder')(x, features[self.low_level_feature])
    logits = AtrousConv(self.num_classes, 1, use_bias=True, dtype=self.dtype,
                        kernel_init=nn.initializers.normal(0.01), name='classifier')(x)
    return resize_bilinear(logits, images.shape[1:3], self.align_corners)
