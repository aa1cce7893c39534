"""Lite R-ASPP (LR-ASPP), the MobileNetV3 paper's segmentation model: the final features gated
by their global average, and class logits from them and from stride-8 features, summed."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.backbones import backbone_features
from deeplab_jax.models.deeplab import classifier
from deeplab_jax.models.layers import AtrousConv, ModuleDef, resize_bilinear
from deeplab_jax.models.normalization import IMAGENET, Normalization


class LRASPP(nn.Module):
  """Semantic segmentation: NHWC raw RGB images (0..255) -> NHWC logits at the input resolution.

  The backbone's `final_feature` goes through a 1x1 conv + BN + ReLU to `features` channels,
  times a sigmoid gate computed from its global average (1x1 conv, no bias), and is upsampled to
  the size of `low_feature`; a 1x1 classifier on each, summed, gives the logits (torchvision's
  LRASPPHead). Pixels, compute dtype, the backbone's ConvBN factory and freeze_batch_norm are as
  in DeepLab.
  """
  num_classes: int
  backbone: ModuleDef
  low_feature: str = 'unit4'
  final_feature: str = 'final'
  features: int = 128
  align_corners: bool = False
  normalization: Normalization = IMAGENET
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  freeze_batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    conv, features = backbone_features(self, images, train)
    low, high = features[self.low_feature], features[self.final_feature]
    x = conv(self.features, 1, name='projection')(high)
    gate = AtrousConv(self.features, 1, dtype=self.dtype, name='gate')(
        jnp.mean(high, axis=(1, 2), keepdims=True))
    x = resize_bilinear(x * nn.sigmoid(gate), low.shape[1:3], self.align_corners)
    logits = (classifier(self.num_classes, self.dtype, 'low_classifier')(low) +
              classifier(self.num_classes, self.dtype, 'classifier')(x))
    return resize_bilinear(logits, images.shape[1:3], self.align_corners)
