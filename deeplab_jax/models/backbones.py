"""The backbone registry: each backbone is one entry, and a backbone can be a model of its own.

An entry holds the module (its architecture fixed), the features DeepLab takes from it, the pixel
normalisation its pretrained weights expect, and the torchvision arch they are imported from.
Adding a backbone means writing its module and adding its entry here.
"""

from collections.abc import Callable
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from deeplab_jax.config_error import ConfigError
from deeplab_jax.models.layers import ModuleDef, conv_bn_factory
from deeplab_jax.models.mobilenet_v2 import MobileNetV2
from deeplab_jax.models.mobilenet_v3 import MobileNetV3
from deeplab_jax.models.normalization import IMAGENET, SYMMETRIC, Normalization, normalize
from deeplab_jax.models.resnet import RESNETS, ResNet
from deeplab_jax.models.vgg import VGG16
from deeplab_jax.models.xception import Xception


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """module(output_stride=, width=, conv=, **options) returns named features, among them
  `low_level` (stride 4, for the v3+ decoder), `auxiliary` (a middle one, for torchvision's
  auxiliary head and LR-ASPP's low-level branch) and `final`. `options` names the
  `config.model` fields the module takes besides output stride and width. batch_norm: whether
  its convolutions have BatchNorm (v1's fc6/fc7 follow it). last_stage_units: a ResNet's, which
  `model.multi_grid` gives one rate each."""
  module: Callable[..., nn.Module]
  low_level: str
  auxiliary: str
  final: str
  normalization: Normalization
  torchvision_arch: str | None = None
  options: tuple[str, ...] = ()
  batch_norm: bool = True
  last_stage_units: int | None = None


def _resnet(depth: int, stem: str = 'standard') -> BackboneSpec:
  """torchvision's ResNets (ImageNet weights), or TF DeepLab's 'beta' variants (no weights)."""
  return BackboneSpec(
      functools.partial(ResNet, depth=depth, stem=stem), 'stage1', 'stage3', 'stage4',
      IMAGENET if stem == 'standard' else SYMMETRIC,
      torchvision_arch=f'resnet{depth}' if stem == 'standard' else None,
      options=('multi_grid', 'keep_rate_in_first_unit'), last_stage_units=RESNETS[depth][1][-1])


BACKBONES = {
    'resnet18': _resnet(18),
    'resnet34': _resnet(34),
    'resnet50': _resnet(50),
    'resnet101': _resnet(101),
    'resnet18_beta': _resnet(18, 'beta'),
    'resnet34_beta': _resnet(34, 'beta'),
    'resnet50_beta': _resnet(50, 'beta'),
    'resnet101_beta': _resnet(101, 'beta'),
    'vgg16': BackboneSpec(VGG16, 'pool2', 'pool4', 'pool5', IMAGENET, 'vgg16', batch_norm=False),
    'vgg16_bn': BackboneSpec(functools.partial(VGG16, batch_norm=True), 'pool2', 'pool4', 'pool5',
                             IMAGENET, 'vgg16_bn'),
    'xception41': BackboneSpec(functools.partial(Xception, middle_blocks=8), 'low_level',
                               'middle_flow', 'exit_flow', SYMMETRIC),
    'xception65': BackboneSpec(Xception, 'low_level', 'middle_flow', 'exit_flow', SYMMETRIC),
    'mobilenetv2': BackboneSpec(MobileNetV2, 'stage2', 'stage5', 'stage7', IMAGENET,
                                'mobilenet_v2'),
    # auxiliary: the first unit at stride 8, where torchvision's auxiliary head and LR-ASPP read.
    'mobilenetv3_large': BackboneSpec(functools.partial(MobileNetV3, variant='large'), 'unit3',
                                      'unit4', 'final', IMAGENET, 'mobilenet_v3_large'),
    'mobilenetv3_small': BackboneSpec(functools.partial(MobileNetV3, variant='small'), 'unit1',
                                      'unit2', 'final', IMAGENET, 'mobilenet_v3_small'),
}


def get(name: str) -> BackboneSpec:
  if name not in BACKBONES:
    raise ConfigError('model.backbone', name, f'unknown; expected one of {tuple(BACKBONES)}',
                      'resnet50')
  return BACKBONES[name]


def create_backbone(config: ml_collections.ConfigDict) -> functools.partial:
  """The backbone factory `config` (a recipe's `model` section) describes."""
  options = {name: _hashable(config[name]) for name in get(config.backbone).options}
  return functools.partial(get(config.backbone).module, output_stride=config.output_stride,
                           width=config.width, **options)


def _hashable(value: Any) -> Any:
  """Module attributes must be hashable: config lists become tuples."""
  return tuple(value) if isinstance(value, list) else value


class Backbone(nn.Module):
  """Raw RGB images -> the backbone's named features (and 'logits' if it has a classifier).

  Its variables sit under 'backbone', as in a DeepLab model, so a DeepLab run can start from
  them. It normalises the pixels first, as a DeepLab model does.
  """
  backbone: ModuleDef
  normalization: Normalization = IMAGENET
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  freeze_batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
    return backbone_features(self, images, train)[1]


def backbone_features(model: nn.Module, images: jax.Array,
                      train: bool) -> tuple[ModuleDef, dict[str, jax.Array]]:
  """(ConvBN factory, features) of `model`'s backbone on raw `images`, called from the compact
  method of `model` (a Backbone, DeepLab or LRASPP, which all hold the fields read here): the
  pixels normalised and cast to the compute dtype, BatchNorm in training form when `train` and
  not frozen. The heads build their convolutions with the same factory."""
  conv = conv_bn_factory(train and not model.freeze_batch_norm, model.bn_momentum,
                         model.bn_epsilon, model.dtype)
  x = normalize(images, model.normalization.mean_rgb, model.normalization.std_rgb)
  return conv, model.backbone(conv=conv, name='backbone')(x.astype(model.dtype))
