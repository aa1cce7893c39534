"""The DeepLab family assembled from parts: backbone -> context module -> [decoder] -> classifier.

v1: VGG-16 -> LargeFOV (fc6, fc7) -> 1x1 classifier. v2: ResNet-101 -> ASPP-L classifier (atrous
3x3 convs to class logits, summed). v3: -> ASPP -> 1x1 classifier. v3+: v3 with the decoder.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.backbones import backbone_features
from deeplab_jax.models.layers import AtrousConv, ConvBN, ModuleDef, resize_bilinear
from deeplab_jax.models.normalization import SYMMETRIC, Normalization


def classifier(num_classes: int, dtype: Any, name: str, kernel_size: int = 1,
               rate: int = 1) -> AtrousConv:
  """A convolution to class logits, with bias: the final 1x1 one, or a branch of ASPP-L."""
  return AtrousConv(num_classes, kernel_size, rate, use_bias=True, padding='SYMMETRIC',
                    dtype=dtype, kernel_init=nn.initializers.normal(0.01), name=name)


class PyramidClassifier(nn.Module):
  """DeepLab v2's ASPP-L: one 3x3 atrous convolution to class logits per rate, summed."""
  num_classes: int
  rates: Sequence[int] = (6, 12, 18, 24)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return sum(classifier(self.num_classes, x.dtype, f'rate{rate}', 3, rate)(x)
               for rate in self.rates)


class AuxiliaryHead(nn.Module):
  """torchvision's FCNHead: 3x3 conv + BN + ReLU, dropout 0.1, 1x1 classifier."""
  num_classes: int
  features: int = 256
  conv: ModuleDef = ConvBN

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = self.conv(self.features, 3, name='conv')(x)
    x = nn.Dropout(0.1, deterministic=not train)(x)
    return classifier(self.num_classes, x.dtype, 'classifier')(x)


class DeepLab(nn.Module):
  """Semantic segmentation: NHWC raw RGB images (0..255) -> NHWC logits at the input resolution.

  The images are first normalised (`normalization`, the backbone's) and cast to the compute
  dtype. backbone, context and decoder are module factories (e.g. `functools.partial(ResNet,
  depth=50)`) that receive `conv`, the ConvBN factory with this model's BatchNorm and compute
  dtype; layers without BatchNorm compute in their input's dtype. The context module
  (ASPP, LargeFOV) is named by its factory's `name`. context=None feeds the backbone's features
  to the classifier directly; decoder=None gives no decoder. head_features > 0 adds a 3x3 conv
  before the classifier (torchvision's DeepLabHead). classifier_rates makes the classifier
  ASPP-L (DeepLab v2) instead of a 1x1 conv. aux_head_features > 0 adds torchvision's auxiliary
  head on `aux_feature`; its logits, at the input resolution, are sown into the 'intermediates'
  collection as 'aux_logits'. freeze_batch_norm: BatchNorm uses its running statistics in
  training too (and leaves them as they are); dropout still trains.
  """
  num_classes: int
  backbone: ModuleDef
  context: ModuleDef | None = None
  decoder: ModuleDef | None = None
  head_features: int = 0
  classifier_rates: Sequence[int] = ()
  aux_head_features: int = 0
  low_level_feature: str = 'stage1'
  aux_feature: str = 'stage3'
  final_feature: str = 'stage4'
  align_corners: bool = True
  normalization: Normalization = SYMMETRIC
  bn_momentum: float = 0.9997
  bn_epsilon: float = 1e-5
  freeze_batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    size = images.shape[1:3]
    conv, features = backbone_features(self, images, train)
    x = features[self.final_feature]
    if self.context is not None:
      x = self.context(conv=conv)(x, train)
    if self.decoder is not None:
      x = self.decoder(conv=conv, name='decoder')(x, features[self.low_level_feature])
    if self.head_features:
      x = conv(self.head_features, 3, name='head')(x)
    if self.classifier_rates:
      logits = PyramidClassifier(self.num_classes, tuple(self.classifier_rates),
                                 name='classifier')(x)
    else:
      logits = classifier(self.num_classes, self.dtype, 'classifier')(x)
    if self.aux_head_features:
      aux_logits = AuxiliaryHead(self.num_classes, self.aux_head_features, conv,
                                 name='aux_head')(features[self.aux_feature], train)
      self.sow('intermediates', 'aux_logits',
               resize_bilinear(aux_logits, size, self.align_corners))
    return resize_bilinear(logits, size, self.align_corners)
