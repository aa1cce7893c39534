"""VGG-16, Xception-41/65 and MobileNetV2: feature strides at every output stride, and parameter
counts against torchvision's models or the papers' architecture tables."""

import functools

import jax
import jax.numpy as jnp
import pytest
import torch
import torchvision

from deeplab_jax.models import BACKBONES as BACKBONE_REGISTRY
from deeplab_jax.models import ConvBN, MobileNetV2, VGG16, Xception

EVAL_CONV = ConvBN  # Inference: running statistics.
# (module, its final feature, its stride-4 feature)
BACKBONES = {
    'vgg16': (functools.partial(VGG16), 'pool5', 'pool2'),
    'vgg16_bn': (functools.partial(VGG16, batch_norm=True), 'pool5', 'pool2'),
    'xception65': (functools.partial(Xception), 'exit_flow', 'low_level'),
    'mobilenetv2': (functools.partial(MobileNetV2), 'stage7', 'stage2'),
}


def param_count(module, size=33):
  variables = jax.eval_shape(
      lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  return sum(x.size for x in jax.tree.leaves(variables['params']))


@pytest.mark.parametrize('name', sorted(BACKBONES))
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_feature_strides(name, output_stride):
  factory, final, low_level = BACKBONES[name]
  module = factory(output_stride=output_stride, width=0.125, conv=EVAL_CONV)
  images = jnp.zeros((1, 49, 83, 3))
  features = jax.eval_shape(lambda: module.init_with_output(jax.random.key(1), images)[0])
  assert features[final].shape[1:3] == (-(-49 // output_stride), -(-83 // output_stride))
  assert features[low_level].shape[1:3] == (13, 21)  # Stride 4.


def torch_count(module):
  return sum(p.numel() for p in module.parameters())


def test_vgg16_has_torchvisions_conv_parameters():
  assert param_count(VGG16(conv=EVAL_CONV)) == torch_count(torchvision.models.vgg16().features)
  # torchvision's vgg16_bn keeps conv biases before BatchNorm, which cancels them; ours has none.
  features = torchvision.models.vgg16_bn().features
  biases = sum(m.bias.numel() for m in features if isinstance(m, torch.nn.Conv2d))
  assert param_count(VGG16(batch_norm=True, conv=EVAL_CONV)) == torch_count(features) - biases


def test_mobilenet_v2_has_torchvisions_parameters_without_the_last_conv():
  # DeepLab drops MobileNetV2's final 1x1 conv to 1280 channels (features[-1]) and classifier.
  features = torchvision.models.mobilenet_v2().features
  assert param_count(MobileNetV2(conv=EVAL_CONV)) == torch_count(features[:-1])


@pytest.mark.parametrize('middle_blocks', [8, 16])
def test_xception_parameters_follow_the_papers_table(middle_blocks):
  separable = lambda c_in, c_out: 9 * c_in + 2 * c_in + c_in * c_out + 2 * c_out
  conv_bn = lambda k, c_in, c_out: k * k * c_in * c_out + 2 * c_out

  def block(c_in, depths, conv_shortcut):
    count = sum(separable(a, b) for a, b in zip((c_in,) + depths[:2], depths))
    return count + (conv_bn(1, c_in, depths[-1]) if conv_shortcut else 0)

  want = conv_bn(3, 3, 32) + conv_bn(3, 32, 64)
  want += block(64, (128, 128, 128), True) + block(128, (256, 256, 256), True)
  want += block(256, (728, 728, 728), True) + middle_blocks * block(728, (728, 728, 728), False)
  want += block(728, (728, 1024, 1024), True) + block(1024, (1536, 1536, 2048), False)
  assert param_count(Xception(middle_blocks=middle_blocks, conv=EVAL_CONV)) == want


@pytest.mark.parametrize('name', sorted(BACKBONE_REGISTRY))
def test_every_registry_entry_gives_its_features(name):
  spec = BACKBONE_REGISTRY[name]
  module = spec.module(output_stride=16, width=0.125, conv=EVAL_CONV)
  images = jnp.zeros((1, 49, 83, 3))
  features = jax.eval_shape(lambda: module.init_with_output(jax.random.key(1), images)[0])
  assert features[spec.low_level].shape[1:3] == (13, 21)  # Stride 4.
  assert features[spec.final].shape[1:3] == (4, 6)  # Stride 16.
  assert spec.auxiliary in features
