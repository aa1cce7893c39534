"""torchvision ResNet and DeepLabV3 weights -> our models and variables, weight for weight.

torchvision's architecture is expressed through our model config (`model_config`): its dilation
policy, ASPP rates (12, 24, 36) at output stride 8, the extra 3x3 conv of its DeepLabHead, the
auxiliary FCN head, dropout 0.5, and half-pixel bilinear resizing.
"""

from collections.abc import Mapping
import functools
import re

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplab_jax import defaults
from deeplab_jax.models import Backbone, create_model
from deeplab_jax.models.resnet import ResNet

ARCHS = ('resnet50', 'resnet101', 'deeplabv3_resnet50', 'deeplabv3_resnet101')

# torchvision module path -> ours (a function of the match); classification ResNets get the
# 'backbone.' prefix of the segmentation models before matching.
_RULES = (
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


def our_module(torch_module: str) -> str:
  """Our module path for a torchvision module path, e.g. 'backbone.layer1.0.bn2'."""
  for pattern, ours in _RULES:
    match = re.fullmatch(pattern, torch_module)
    if match:
      return ours(match)
  raise ValueError(f'no counterpart for torchvision module {torch_module!r}')


def our_leaf(torch_key: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
  """(our 'collection/module/name' path, array in our layout) for one state_dict entry."""
  module, _, name = torch_key.rpartition('.')
  if name == 'num_batches_tracked':
    return None
  path = our_module(module)
  if name == 'weight' and value.ndim == 4:  # Conv: OIHW -> HWIO.
    return f'params/{path}/kernel', value.transpose(2, 3, 1, 0)
  if name == 'weight' and value.ndim == 2:  # Linear: [out, in] -> [in, out].
    return f'params/{path}/kernel', value.T
  leaf = {'weight': 'params/{}/scale', 'bias': 'params/{}/bias',
          'running_mean': 'batch_stats/{}/mean', 'running_var': 'batch_stats/{}/var'}.get(name)
  if leaf is None:
    raise ValueError(f'unexpected torchvision parameter {torch_key!r}')
  return leaf.format(path), value


def model_config(arch: str, num_classes: int, aux_head: bool = False) -> ml_collections.ConfigDict:
  """Our `config.model` for torchvision's `deeplabv3_resnet50/101` (arch names as in ARCHS)."""
  config = defaults.get_config().model
  config.architecture = 'deeplabv3'
  config.backbone = arch.removeprefix('deeplabv3_')
  config.num_classes = num_classes
  config.output_stride = 8  # replace_stride_with_dilation=[False, True, True].
  config.keep_rate_in_first_unit = True
  config.multi_grid = (1, 1, 1)
  config.atrous_rates = (12, 24, 36)
  config.aspp_features = 256
  config.dropout_rate = 0.5
  config.head_features = 256
  config.aux_head_features = 256 if aux_head else 0
  config.align_corners = False
  config.bn_momentum = 0.9  # PyTorch's momentum 0.1 weighs the new batch instead.
  config.bn_epsilon = 1e-5
  return config


def create_torchvision_model(arch: str, num_classes: int, aux_head: bool = False) -> nn.Module:
  """Our model with torchvision's architecture; ResNets keep their ImageNet classifier."""
  if arch not in ARCHS:
    raise ValueError(f'unknown arch {arch!r}; expected one of {ARCHS}')
  if arch.startswith('resnet'):
    return Backbone(functools.partial(ResNet, depth=int(arch.removeprefix('resnet')),
                                      output_stride=32, num_classes=num_classes))
  return create_model(model_config(arch, num_classes, aux_head))


def convert(state_dict: Mapping[str, object], arch: str,
            num_classes: int | None = None) -> tuple[nn.Module, dict]:
  """(model, variables) equivalent to torchvision's `arch` with the weights of `state_dict`.

  `model.apply(variables, images, train=False)` on NHWC float images gives NHWC logits at the
  input resolution (for the ResNets: the dict of features with ImageNet 'logits'). num_classes
  defaults to the state dict's; a DeepLabV3 state dict with an `aux_classifier` gives a model
  with the auxiliary head.
  """
  arrays = {key: np.asarray(value.detach().cpu().numpy() if hasattr(value, 'detach') else value)
            for key, value in state_dict.items()}
  if arch.startswith('resnet'):
    arrays = {f'backbone.{key}': value for key, value in arrays.items()}
  classifier_key = 'backbone.fc.weight' if arch.startswith('resnet') else 'classifier.4.weight'
  if classifier_key not in arrays:
    raise ValueError(f'not a torchvision {arch} state dict: it has no {classifier_key!r}')
  stored_classes = arrays[classifier_key].shape[0]
  if num_classes is not None and num_classes != stored_classes:
    raise ValueError(f'num_classes={num_classes}, but the state dict has {stored_classes} '
                     'classes; convert as is and fine-tune with --config.init_from')
  aux_head = any(key.startswith('aux_classifier.') for key in arrays)
  model = create_torchvision_model(arch, stored_classes, aux_head)

  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 65, 65, 3)), train=False))
  expected = traverse_util.flatten_dict(
      {'params': shapes['params'], 'batch_stats': shapes['batch_stats']}, sep='/')
  converted = {}
  for key, value in arrays.items():
    leaf = our_leaf(key, value)
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
  return model, traverse_util.unflatten_dict(jax.tree.map(jnp.asarray, converted), sep='/')
