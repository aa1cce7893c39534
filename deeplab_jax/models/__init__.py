"""DeepLab models, and LR-ASPP; `create_model(config.model)` builds any of them from a config."""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from deeplab_jax.config_error import ConfigError
from deeplab_jax.models import backbones
from deeplab_jax.models.aspp import ASPP
from deeplab_jax.models.backbones import BACKBONES, Backbone, create_backbone
from deeplab_jax.models.decoder import Decoder
from deeplab_jax.models.deeplab import AuxiliaryHead, DeepLab, PyramidClassifier
from deeplab_jax.models.layers import AtrousConv, ConvBN, SeparableConvBN, resize_bilinear
from deeplab_jax.models.lraspp import LRASPP
from deeplab_jax.models.mobilenet_v2 import MobileNetV2
from deeplab_jax.models.mobilenet_v3 import MobileNetV3
from deeplab_jax.models.normalization import Normalization
from deeplab_jax.models.resnet import ResNet
from deeplab_jax.models.vgg import VGG16, LargeFOV
from deeplab_jax.models.xception import Xception

ARCHITECTURES = ('deeplabv1', 'deeplabv2', 'deeplabv3', 'deeplabv3plus', 'lraspp')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str):
  """The dtype `model.dtype` names; 'auto' is bfloat16 on TPU (its native matmul type) and
  float32 elsewhere."""
  if name == 'auto':
    return jnp.bfloat16 if jax.default_backend() == 'tpu' else jnp.float32
  if name not in DTYPES:
    raise ConfigError('model.dtype', name, f"unknown; expected one of {(*DTYPES, 'auto')}", 'auto')
  return DTYPES[name]


def create_context(config: ml_collections.ConfigDict) -> functools.partial | None:
  """The module between backbone and classifier: LargeFOV (v1), none (v2), ASPP (v3, v3+)."""
  if config.architecture == 'deeplabv1':
    if len(config.atrous_rates) != 1:
      raise ConfigError('model.atrous_rates', config.atrous_rates,
                        'DeepLab v1 takes one rate, that of fc6', (12,))
    return functools.partial(LargeFOV, features=config.large_fov_features,
                             rate=config.atrous_rates[0], dropout_rate=config.dropout_rate,
                             batch_norm=backbones.get(config.backbone).batch_norm,
                             name='large_fov')
  if config.architecture == 'deeplabv2':
    return None
  return functools.partial(ASPP, features=config.aspp_features,
                           atrous_rates=tuple(config.atrous_rates),
                           dropout_rate=config.dropout_rate, separable=config.separable_conv,
                           name='aspp')


def normalization(config: ml_collections.ConfigDict) -> Normalization:
  """The backbone's pixel normalisation, or `config.mean_rgb` / `config.std_rgb` where set."""
  default = backbones.get(config.backbone).normalization
  mean = tuple(config.mean_rgb or default.mean_rgb)
  std = tuple(config.std_rgb or default.std_rgb)
  if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
    key, value, works = (('model.std_rgb', std, default.std_rgb) if len(mean) == 3 else
                         ('model.mean_rgb', mean, default.mean_rgb))
    raise ConfigError(key, value, 'mean_rgb and std_rgb take three values each, the standard '
                      'deviations positive', works)
  return Normalization(mean, std)


def check_model_config(config: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError for a `model` section that cannot build a model."""
  if config.architecture not in ARCHITECTURES:
    raise ConfigError('model.architecture', config.architecture,
                      f'unknown; expected one of {ARCHITECTURES}', 'deeplabv3plus')
  spec = backbones.get(config.backbone)
  if config.output_stride not in (8, 16, 32):
    raise ConfigError('model.output_stride', config.output_stride, 'must be 8, 16 or 32', 16)
  units = spec.last_stage_units
  if units and len(config.multi_grid) != units:
    raise ConfigError('model.multi_grid', config.multi_grid,
                      f'{config.backbone} needs one rate per unit of its last stage ({units})',
                      tuple(2 ** index for index in range(units)))
  if not config.width > 0:
    raise ConfigError('model.width', config.width, 'must be positive', 1.0)
  if any(rate < 1 for rate in config.atrous_rates):
    raise ConfigError('model.atrous_rates', config.atrous_rates, 'rates are at least 1',
                      (6, 12, 18))
  compute_dtype(config.dtype)
  normalization(config)


def create_model(config: ml_collections.ConfigDict) -> DeepLab | LRASPP:
  """Builds the model described by `config` (the `model` section of a recipe)."""
  check_model_config(config)
  spec = backbones.get(config.backbone)
  if config.architecture == 'lraspp':
    return LRASPP(num_classes=config.num_classes, backbone=create_backbone(config),
                  low_feature=spec.auxiliary, final_feature=spec.final,
                  features=config.lraspp_features, align_corners=config.align_corners,
                  normalization=normalization(config), bn_momentum=config.bn_momentum,
                  bn_epsilon=config.bn_epsilon, freeze_batch_norm=config.freeze_batch_norm,
                  dtype=compute_dtype(config.dtype))
  decoder = None
  if config.architecture == 'deeplabv3plus':
    decoder = functools.partial(Decoder, low_level_features=config.low_level_features,
                                features=config.decoder_features,
                                align_corners=config.align_corners,
                                separable=config.separable_conv)
  return DeepLab(num_classes=config.num_classes, backbone=create_backbone(config),
                 context=create_context(config), decoder=decoder,
                 head_features=config.head_features,
                 classifier_rates=(tuple(config.atrous_rates)
                                   if config.architecture == 'deeplabv2' else ()),
                 aux_head_features=config.aux_head_features, low_level_feature=spec.low_level,
                 aux_feature=spec.auxiliary, final_feature=spec.final,
                 align_corners=config.align_corners, normalization=normalization(config),
                 bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon,
                 freeze_batch_norm=config.freeze_batch_norm, dtype=compute_dtype(config.dtype))


def abstract_variables(model, image_size: tuple[int, int],
                       sharding: jax.sharding.Sharding | None = None):
  """The shapes and dtypes of `model`'s variables (with `sharding`), computing nothing: what
  model weights are restored onto."""
  images = jax.ShapeDtypeStruct((1, *image_size, 3), jnp.uint8)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)
