"""torchvision ResNet, DeepLabV3, LR-ASPP, MobileNetV2/V3 and VGG-16 weights -> our models and
variables.

Which torchvision arch each of our backbones imports from is the backbone registry's
(`deeplab_jax.models.backbones`); this module knows how torchvision names their layers.
torchvision's DeepLabV3 and LR-ASPP are expressed through our model config (`model_config`):
the dilation policy (ResNets at output stride 8, MobileNetV3 at 16), ASPP rates (12, 24, 36),
the extra 3x3 conv of its DeepLabHead, the auxiliary FCN head, dropout 0.5, LR-ASPP's 128
channels, and half-pixel bilinear resizing. The ImageNet MobileNetV2, MobileNetV3 and VGG-16
become our backbones alone, as DeepLab uses them (`LEFT_OUT` names what they lose).
Converted models take raw RGB pixels and normalise them as torchvision's weights expect.
"""

from collections.abc import Iterable, Mapping
import functools
import re

from absl import logging
from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplab_jax import defaults
from deeplab_jax.models import Backbone, backbones, create_model
from deeplab_jax.models import mobilenet_v2
from deeplab_jax.models import mobilenet_v3
from deeplab_jax.models import vgg

# torchvision's ImageNet backbones -> ours, as the registry says.
BACKBONES = {spec.torchvision_arch: name for name, spec in backbones.BACKBONES.items()
             if spec.torchvision_arch}
# torchvision's segmentation models -> our backbone under them.
DEEPLABV3 = {'deeplabv3_resnet50': 'resnet50', 'deeplabv3_resnet101': 'resnet101',
             'deeplabv3_mobilenet_v3_large': 'mobilenetv3_large'}
LRASPP = {'lraspp_mobilenet_v3_large': 'mobilenetv3_large'}
SEGMENTATION = {**DEEPLABV3, **LRASPP}
ARCHS = (*BACKBONES, *SEGMENTATION)

# torchvision modules (a pattern) that the backbone-only archs leave out, and what they are.
LEFT_OUT = {
    'mobilenet_v2': (r'features\.18\.[01]|classifier\.1',
                     'the final 1x1 conv to 1280 channels and the ImageNet classifier, which '
                     'DeepLab drops'),
    'vgg16': (r'classifier\.[036]', "the fully connected layers (DeepLab-LargeFOV's fc6 and fc7 "
              'have other shapes and start from their initialisation)'),
}
LEFT_OUT['vgg16_bn'] = LEFT_OUT['vgg16']
LEFT_OUT['mobilenet_v3_large'] = LEFT_OUT['mobilenet_v3_small'] = (
    r'classifier\.[03]', 'the ImageNet classifier (two fully connected layers after global '
    'pooling), which the segmentation heads replace')
BACKBONE_ONLY = tuple(LEFT_OUT)
# The classification ResNets, which keep their ImageNet classifier.
RESNETS = tuple(arch for arch in BACKBONES if arch not in BACKBONE_ONLY)

# torchvision ResNet and DeepLabV3 module path -> ours (a function of the match); classification
# ResNets get the 'backbone.' prefix of the segmentation models before matching.
_DEEPLABV3_RULES = (
    (r'backbone\.conv1', lambda m: 'backbone/stem_conv/conv'),
    (r'backbone\.bn1', lambda m: 'backbone/stem_conv/bn'),
    (r'backbone\.layer(\d)\.(\d+)\.(conv|bn)(\d)',
     lambda m: f'backbone/stage{m[1]}_unit{int(m[2]) + 1}/conv{m[4]}/{m[3]}'),
    (r'backbone\.layer(\d)\.(\d+)\.downsample\.([01])',
     lambda m: f'backbone/stage{m[1]}_unit{int(m[2]) + 1}/shortcut/{("conv", "bn")[int(m[3])]}'),
    (r'backbone\.fc', lambda m: 'backbone/logits'),
    (r'classifier\.0\.convs\.0\.([01])', lambda m: f'aspp/conv1x1/{("conv", "bn")[int(m[1])]}'),
    (r'classifier\.0\.convs\.([123])\.([01])',
     lambda m: f'aspp/atrous{m[1]}/{("conv", "bn")[int(m[2])]}'),
    (r'classifier\.0\.convs\.4\.([12])',
     lambda m: f'aspp/image_pooling/{("conv", "bn")[int(m[1]) - 1]}'),
    (r'classifier\.0\.project\.([01])', lambda m: f'aspp/projection/{("conv", "bn")[int(m[1])]}'),
    (r'classifier\.([12])', lambda m: f'head/{("conv", "bn")[int(m[1]) - 1]}'),
    (r'classifier\.4', lambda m: 'classifier'),
    (r'aux_classifier\.([01])', lambda m: f'aux_head/conv/{("conv", "bn")[int(m[1])]}'),
    (r'aux_classifier\.4', lambda m: 'aux_head/classifier'),
)
# torchvision's LRASPPHead: cbr (conv, bn, ReLU), scale (pool, conv, sigmoid), two classifiers.
_LRASPP_RULES = (
    (r'classifier\.cbr\.([01])', lambda m: f'projection/{("conv", "bn")[int(m[1])]}'),
    (r'classifier\.scale\.1', lambda m: 'gate'),
    (r'classifier\.low_classifier', lambda m: 'low_classifier'),
    (r'classifier\.high_classifier', lambda m: 'classifier'),
)


def _mobilenet_v2_modules() -> dict[str, str]:
  """torchvision's mobilenet_v2 module paths -> ours: features.0 is the stem, features.1-17 the
  inverted residuals of our STAGES, each a Sequential of (conv, bn, ReLU6) blocks, conv, bn."""
  conv_bn = ('conv', 'bn')
  modules = {f'features.0.{j}': f'backbone/stem_conv/{conv_bn[j]}' for j in (0, 1)}
  index = 1
  for stage, (expansion, _, num_units, _) in enumerate(mobilenet_v2.STAGES, start=1):
    layers = ('expand', 'depthwise') if expansion != 1 else ('depthwise',)
    for unit in range(1, num_units + 1):
      prefix, ours = f'features.{index}.conv', f'backbone/stage{stage}_unit{unit}'
      for i, layer in enumerate(layers):
        modules.update({f'{prefix}.{i}.{j}': f'{ours}/{layer}/{conv_bn[j]}' for j in (0, 1)})
      modules.update({f'{prefix}.{len(layers) + j}': f'{ours}/project/{conv_bn[j]}'
                      for j in (0, 1)})
      index += 1
  return modules


def _mobilenet_v3_modules(variant: str, prefix: str) -> dict[str, str]:
  """torchvision's mobilenet_v3 module paths -> ours, under `prefix` ('features', or 'backbone'
  in the segmentation models): {prefix}.0 is the stem, then one inverted residual per row of our
  UNITS, a Sequential `block` of [expand], depthwise, [squeeze-excitation fc1, fc2] and project
  (each a conv, bn[, activation] block), then the final 1x1 conv."""
  conv_bn = ('conv', 'bn')
  modules = {f'{prefix}.0.{j}': f'backbone/stem_conv/{conv_bn[j]}' for j in (0, 1)}
  channels = mobilenet_v3.STEM_CHANNELS
  rows = mobilenet_v3.UNITS[variant]
  for index, (_, expanded, out, squeeze_excite, _, _) in enumerate(rows, start=1):
    layers = (('expand',) * (expanded != channels) + ('depthwise',) +
              ('squeeze_excite',) * squeeze_excite + ('project',))
    for i, layer in enumerate(layers):
      block, ours = f'{prefix}.{index}.block.{i}', f'backbone/unit{index}/{layer}'
      if layer == 'squeeze_excite':
        modules.update({f'{block}.fc1': f'{ours}/reduce', f'{block}.fc2': f'{ours}/expand'})
      else:
        modules.update({f'{block}.{j}': f'{ours}/{conv_bn[j]}' for j in (0, 1)})
    channels = out
  modules.update({f'{prefix}.{len(rows) + 1}.{j}': f'backbone/final_conv/{conv_bn[j]}'
                  for j in (0, 1)})
  return modules


def _vgg16_modules(batch_norm: bool) -> dict[str, str]:
  """torchvision's vgg16(_bn) module paths -> ours: its features are conv, [bn,] ReLU for each
  conv of our STAGES and a max pool after each stage."""
  modules, index = {}, 0
  for stage, (_, num_convs) in enumerate(vgg.STAGES, start=1):
    for conv in range(1, num_convs + 1):
      ours = f'backbone/conv{stage}_{conv}/conv'
      if batch_norm:
        modules.update({f'features.{index}': f'{ours}/conv', f'features.{index + 1}': f'{ours}/bn'})
        index += 3
      else:
        modules[f'features.{index}'] = ours
        index += 2
    index += 1
  return modules


# Per arch, its backbone's module paths (all of them for the backbone-only archs).
_BACKBONE_MODULES = {'mobilenet_v2': _mobilenet_v2_modules(), 'vgg16': _vgg16_modules(False),
                     'vgg16_bn': _vgg16_modules(True),
                     'mobilenet_v3_large': _mobilenet_v3_modules('large', 'features'),
                     'mobilenet_v3_small': _mobilenet_v3_modules('small', 'features'),
                     'deeplabv3_mobilenet_v3_large': _mobilenet_v3_modules('large', 'backbone'),
                     'lraspp_mobilenet_v3_large': _mobilenet_v3_modules('large', 'backbone')}


def our_module(torch_module: str, arch: str) -> str | None:
  """Our module path for a module path of torchvision's `arch`, e.g. 'backbone.layer1.0.bn2';
  None for one that `arch` leaves out (LEFT_OUT)."""
  if arch in LEFT_OUT and re.fullmatch(LEFT_OUT[arch][0], torch_module):
    return None
  ours = _BACKBONE_MODULES.get(arch, {}).get(torch_module)
  if ours is None and arch not in BACKBONE_ONLY:
    rules = _LRASPP_RULES if arch in LRASPP else _DEEPLABV3_RULES
    matches = ((re.fullmatch(pattern, torch_module), rule) for pattern, rule in rules)
    ours = next((rule(match) for match, rule in matches if match), None)
  if ours is None:
    raise ValueError(f'no counterpart in our {arch} for torchvision module {torch_module!r}')
  return ours


def left_out(torch_keys: Iterable[str], arch: str) -> list[str]:
  """The torchvision modules of state dict `torch_keys` that `convert` leaves out on purpose."""
  if arch not in LEFT_OUT:
    return []
  modules = {key.rpartition('.')[0] for key in torch_keys}
  return sorted(m for m in modules if re.fullmatch(LEFT_OUT[arch][0], m))


def our_leaf(torch_key: str, value: np.ndarray, arch: str) -> tuple[str, np.ndarray] | None:
  """(our 'collection/module/name' path, array in our layout) for one state_dict entry of
  `arch`; None for BatchNorm's step count and for modules left out."""
  module, _, name = torch_key.rpartition('.')
  path = our_module(module, arch)
  if name == 'num_batches_tracked' or path is None:
    return None
  if name == 'weight' and value.ndim == 4:  # Conv: OIHW -> HWIO; depthwise [C, 1, k, k] too.
    return f'params/{path}/kernel', value.transpose(2, 3, 1, 0)
  if name == 'weight' and value.ndim == 2:  # Linear: [out, in] -> [in, out].
    return f'params/{path}/kernel', value.T
  leaf = {'weight': 'params/{}/scale', 'bias': 'params/{}/bias',
          'running_mean': 'batch_stats/{}/mean', 'running_var': 'batch_stats/{}/var'}.get(name)
  if leaf is None:
    raise ValueError(f'unexpected torchvision parameter {torch_key!r}')
  return leaf.format(path), value


def model_config(arch: str, num_classes: int, aux_head: bool = False) -> ml_collections.ConfigDict:
  """Our `config.model` for torchvision's segmentation model `arch` (one of SEGMENTATION)."""
  config = defaults.get_config().model
  config.backbone = SEGMENTATION[arch]
  config.num_classes = num_classes
  config.align_corners = False
  config.bn_momentum = 0.9  # PyTorch's momentum 0.1 weighs the new batch instead.
  config.bn_epsilon = 1e-5  # The heads'; MobileNetV3 keeps its own 1e-3.
  # MobileNetV3 with dilated=True: the last stage at rate 2, its first unit included.
  config.output_stride = 16
  if arch in LRASPP:
    config.architecture = 'lraspp'
    config.lraspp_features = 128
    return config
  config.architecture = 'deeplabv3'
  resnet = config.backbone.startswith('resnet')
  if resnet:
    config.output_stride = 8  # replace_stride_with_dilation=[False, True, True].
    config.keep_rate_in_first_unit = True
    config.multi_grid = (1, 1, 1)
  config.atrous_rates = (12, 24, 36)
  config.aspp_features = 256
  config.dropout_rate = 0.5
  config.head_features = 256
  # FCNHead: a quarter of its input's channels (ResNet's stage3: 1024, MobileNetV3's unit4: 40).
  config.aux_head_features = (1024 if resnet else 40) // 4 if aux_head else 0
  return config


def create_torchvision_model(arch: str, num_classes: int | None = None,
                             aux_head: bool = False) -> nn.Module:
  """Our model with torchvision's architecture; ResNets keep their ImageNet classifier.

  num_classes is that of the ResNet, DeepLabV3 or LR-ASPP classifier. The other backbones come
  alone, at output stride 32 (no atrous convolution) like torchvision's.
  """
  if arch not in ARCHS:
    raise ValueError(f'unknown arch {arch!r}; expected one of {ARCHS}')
  if arch in SEGMENTATION:
    return create_model(model_config(arch, num_classes, aux_head))
  spec = backbones.get(BACKBONES[arch])
  classifier = {} if arch in BACKBONE_ONLY else {'num_classes': num_classes}
  return Backbone(functools.partial(spec.module, output_stride=32, **classifier),
                  spec.normalization)


def _fold_conv_biases(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """vgg16_bn's conv biases folded into the running mean of the BatchNorm after each conv.

  Our conv before BatchNorm has no bias: BN(conv(x) + b) with mean m is BN(conv(x)) with mean
  m - b, and in training the batch mean absorbs b all the same.
  """
  folded = dict(arrays)
  for key, bias in arrays.items():
    conv = re.fullmatch(r'features\.(\d+)\.bias', key)
    mean = f'features.{int(conv[1]) + 1}.running_mean' if conv else None
    if mean in arrays:  # A BatchNorm follows, so `key` is a conv's bias.
      folded[mean] = arrays[mean] - bias
      del folded[key]
  return folded


def convert(state_dict: Mapping[str, object], arch: str,
            num_classes: int | None = None) -> tuple[nn.Module, dict]:
  """(model, variables) equivalent to torchvision's `arch` with the weights of `state_dict`.

  `model.apply(variables, images, train=False)` on NHWC raw RGB images (0..255) gives NHWC
  logits at the input resolution (for the ResNets: the dict of features with ImageNet
  'logits'; for the backbone-only archs the features alone, and the modules of `left_out` are
  logged and not converted). num_classes defaults to the state dict's; a DeepLabV3 state dict
  with an `aux_classifier` gives a model with the auxiliary head.
  """
  arrays = {key: np.asarray(value.detach().cpu().numpy() if hasattr(value, 'detach') else value)
            for key, value in state_dict.items()}
  if arch in RESNETS:
    arrays = {f'backbone.{key}': value for key, value in arrays.items()}
  stored_classes = None
  if arch in BACKBONE_ONLY:
    if num_classes is not None:
      raise ValueError(f"num_classes={num_classes}, but our {arch} has no classifier: DeepLab's "
                       'replaces the ImageNet one')
  else:
    classifier_key = ('backbone.fc.weight' if arch in RESNETS else
                      'classifier.high_classifier.weight' if arch in LRASPP else
                      'classifier.4.weight')
    if classifier_key not in arrays:
      raise ValueError(f'not a torchvision {arch} state dict: it has no {classifier_key!r}')
    stored_classes = arrays[classifier_key].shape[0]
    if num_classes is not None and num_classes != stored_classes:
      raise ValueError(f'num_classes={num_classes}, but the state dict has {stored_classes} '
                       'classes; convert as is and fine-tune with --config.init_from')
  if arch == 'vgg16_bn':
    arrays = _fold_conv_biases(arrays)
  aux_head = any(key.startswith('aux_classifier.') for key in arrays)
  model = create_torchvision_model(arch, stored_classes, aux_head)

  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 65, 65, 3)), train=False))
  expected = traverse_util.flatten_dict(shapes, sep='/')  # params and batch_stats (if any).
  converted = {}
  for key, value in arrays.items():
    leaf = our_leaf(key, value, arch)
    if leaf is None:
      continue
    path, value = leaf
    if path not in expected:
      raise ValueError(f'{key}: no parameter {path!r} in our {arch}')
    if value.shape != expected[path].shape:
      raise ValueError(f'{key}: shape {value.shape} (as {path}) but ours is '
                       f'{expected[path].shape}')
    converted[path] = value.astype(np.float32)
  missing = sorted(set(expected) - set(converted))
  if missing:
    raise ValueError(f'the state dict lacks what our {arch} needs: {missing[:5]}...')
  skipped = left_out(arrays, arch)
  if skipped:
    logging.info('Left out of %s: %s (%s)', arch, ', '.join(skipped), LEFT_OUT[arch][1])
  return model, traverse_util.unflatten_dict(jax.tree.map(jnp.asarray, converted), sep='/')
