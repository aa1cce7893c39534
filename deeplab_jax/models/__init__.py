"""DeepLab models; `create_model(config.model)` builds any of them from a config."""

import functools

import jax.numpy as jnp
import ml_collections

from deeplab_jax.models.aspp import ASPP
from deeplab_jax.models.backbone import Backbone
from deeplab_jax.models.decoder import Decoder
from deeplab_jax.models.deeplab import AuxiliaryHead, DeepLab
from deeplab_jax.models.layers import AtrousConv, ConvBN, resize_bilinear
from deeplab_jax.models.resnet import ResNet

ARCHITECTURES = ('deeplabv3', 'deeplabv3plus')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def create_backbone(config: ml_collections.ConfigDict) -> functools.partial:
  """A backbone factory from `config.backbone`, e.g. 'resnet101' or 'resnet101_beta'."""
  name = config.backbone
  depth, _, stem = name.removeprefix('resnet').partition('_')
  if not name.startswith('resnet') or not depth.isdigit() or stem not in ('', 'beta'):
    raise ValueError(f"model.backbone: unknown backbone {name!r}; expected resnet18, resnet34, "
                     "resnet50 or resnet101, optionally with the suffix '_beta'")
  return functools.partial(
      ResNet, depth=int(depth), stem=stem or 'standard', output_stride=config.output_stride,
      multi_grid=tuple(config.multi_grid) if config.multi_grid else None,
      keep_rate_in_first_unit=config.keep_rate_in_first_unit, width=config.width)


def create_model(config: ml_collections.ConfigDict) -> DeepLab:
  """Builds the DeepLab model described by `config` (the `model` section of a recipe)."""
  if config.architecture not in ARCHITECTURES:
    raise ValueError(f'model.architecture: unknown {config.architecture!r}; '
                     f'expected one of {ARCHITECTURES}')
  if config.dtype not in DTYPES:
    raise ValueError(f'model.dtype: unknown {config.dtype!r}; expected one of {tuple(DTYPES)}')
  aspp = functools.partial(ASPP, features=config.aspp_features,
                           atrous_rates=tuple(config.atrous_rates),
                           dropout_rate=config.dropout_rate)
  decoder = None
  if config.architecture == 'deeplabv3plus':
    decoder = functools.partial(Decoder, low_level_features=config.low_level_features,
                                features=config.decoder_features,
                                align_corners=config.align_corners)
  return DeepLab(num_classes=config.num_classes, backbone=create_backbone(config), aspp=aspp,
                 decoder=decoder, head_features=config.head_features,
                 aux_head_features=config.aux_head_features, align_corners=config.align_corners,
                 bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon,
                 dtype=DTYPES[config.dtype])
