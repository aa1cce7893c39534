"""DeepLab models; `create_model(config.model)` builds any of them from a config."""

import functools

import jax.numpy as jnp
import ml_collections

from deeplab_jax.models.aspp import ASPP
from deeplab_jax.models.backbone import Backbone
from deeplab_jax.models.decoder import Decoder
from deeplab_jax.models.deeplab import AuxiliaryHead, DeepLab, PyramidClassifier
from deeplab_jax.models.layers import AtrousConv, ConvBN, SeparableConvBN, resize_bilinear
from deeplab_jax.models.mobilenet_v2 import MobileNetV2
from deeplab_jax.models.resnet import ResNet
from deeplab_jax.models.vgg import VGG16, LargeFOV
from deeplab_jax.models.xception import Xception65

ARCHITECTURES = ('deeplabv1', 'deeplabv2', 'deeplabv3', 'deeplabv3plus')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Backbones besides the ResNets: factories of output_stride and width.
OTHER_BACKBONES = {'vgg16': VGG16, 'vgg16_bn': functools.partial(VGG16, batch_norm=True),
                   'xception65': Xception65, 'mobilenetv2': MobileNetV2}
BACKBONES = ('resnet18', 'resnet34', 'resnet50', 'resnet101', *OTHER_BACKBONES)
# The (low-level at stride 4, auxiliary, final) features of each backbone family.
FEATURES = {'resnet': ('stage1', 'stage3', 'stage4'), 'vgg16': ('pool2', 'pool4', 'pool5'),
            'xception65': ('low_level', 'middle_flow', 'exit_flow'),
            'mobilenetv2': ('stage2', 'stage5', 'stage7')}


def create_backbone(config: ml_collections.ConfigDict) -> functools.partial:
  """A backbone factory from `config.backbone`, e.g. 'resnet101', 'resnet101_beta' or 'vgg16'."""
  name = config.backbone
  common = dict(output_stride=config.output_stride, width=config.width)
  if name in OTHER_BACKBONES:
    return functools.partial(OTHER_BACKBONES[name], **common)
  depth, _, stem = name.removeprefix('resnet').partition('_')
  if not name.startswith('resnet') or not depth.isdigit() or stem not in ('', 'beta'):
    raise ValueError(f'model.backbone: unknown backbone {name!r}; expected one of {BACKBONES}, '
                     "a ResNet optionally with the suffix '_beta'")
  return functools.partial(
      ResNet, depth=int(depth), stem=stem or 'standard',
      multi_grid=tuple(config.multi_grid) if config.multi_grid else None,
      keep_rate_in_first_unit=config.keep_rate_in_first_unit, **common)


def create_context(config: ml_collections.ConfigDict) -> functools.partial | None:
  """The module between backbone and classifier: LargeFOV (v1), none (v2), ASPP (v3, v3+)."""
  if config.architecture == 'deeplabv1':
    if len(config.atrous_rates) != 1:
      raise ValueError('model.atrous_rates: DeepLab v1 takes one rate, that of fc6 (e.g. (12,)); '
                       f'got {tuple(config.atrous_rates)}')
    return functools.partial(LargeFOV, features=config.large_fov_features,
                             rate=config.atrous_rates[0], dropout_rate=config.dropout_rate,
                             batch_norm=config.backbone == 'vgg16_bn', name='large_fov')
  if config.architecture == 'deeplabv2':
    return None
  return functools.partial(ASPP, features=config.aspp_features,
                           atrous_rates=tuple(config.atrous_rates),
                           dropout_rate=config.dropout_rate, separable=config.separable_conv,
                           name='aspp')


def create_model(config: ml_collections.ConfigDict) -> DeepLab:
  """Builds the DeepLab model described by `config` (the `model` section of a recipe)."""
  if config.architecture not in ARCHITECTURES:
    raise ValueError(f'model.architecture: unknown {config.architecture!r}; '
                     f'expected one of {ARCHITECTURES}')
  if config.dtype not in DTYPES:
    raise ValueError(f'model.dtype: unknown {config.dtype!r}; expected one of {tuple(DTYPES)}')
  decoder = None
  if config.architecture == 'deeplabv3plus':
    decoder = functools.partial(Decoder, low_level_features=config.low_level_features,
                                features=config.decoder_features,
                                align_corners=config.align_corners,
                                separable=config.separable_conv)
  backbone = create_backbone(config)
  family = 'resnet' if config.backbone.startswith('resnet') else config.backbone.removesuffix('_bn')
  low_level, aux, final = FEATURES[family]
  return DeepLab(num_classes=config.num_classes, backbone=backbone,
                 context=create_context(config), decoder=decoder,
                 head_features=config.head_features,
                 classifier_rates=(tuple(config.atrous_rates)
                                   if config.architecture == 'deeplabv2' else ()),
                 aux_head_features=config.aux_head_features, low_level_feature=low_level,
                 aux_feature=aux, final_feature=final, align_corners=config.align_corners,
                 bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon,
                 dtype=DTYPES[config.dtype])
