"""The DeepLab family: output shapes at every output stride, parameter counts, and the heads
(ASPP, decoder, LargeFOV, ASPP-L) checked against their definitions from tested parts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax import defaults
from deeplab_jax.models import (ASPP, ConvBN, Decoder, LargeFOV, PyramidClassifier,
                                create_model, resize_bilinear)
from deeplab_jax.models.layers import AtrousConv


def tiny_model_config(architecture, output_stride, num_classes=5):
  config = defaults.get_config().model
  config.architecture, config.output_stride, config.num_classes = (architecture, output_stride,
                                                                   num_classes)
  config.backbone, config.multi_grid, config.width = 'resnet18', (1, 2), 0.125
  config.aspp_features = config.decoder_features = 16
  config.low_level_features = 8
  config.atrous_rates = (2, 4, 6) if output_stride == 8 else (1, 2, 3)
  return config


@pytest.mark.parametrize('architecture', ['deeplabv3', 'deeplabv3plus'])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_logits_at_input_size(architecture, output_stride):
  model = create_model(tiny_model_config(architecture, output_stride))
  images = jax.random.normal(jax.random.key(0), (2, 49, 83, 3))
  # Jitted: op by op, every op of a new shape compiles a program of its own.
  variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(images)
  assert ('decoder' in variables['params']) == (architecture == 'deeplabv3plus')
  logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                                               rngs={'dropout': jax.random.key(2)}))(
                                                   variables, images)
  assert logits.shape == (2, 49, 83, 5)
  assert np.isfinite(np.asarray(logits)).all()
  assert jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, images).shape == (2, 49, 83, 5)


@pytest.mark.parametrize('architecture,backbone,rates,heads', [
    ('deeplabv1', 'vgg16', (12,), {'backbone', 'large_fov', 'classifier'}),
    ('deeplabv1', 'vgg16_bn', (12,), {'backbone', 'large_fov', 'classifier'}),
    ('deeplabv2', 'resnet18', (6, 12, 18, 24), {'backbone', 'classifier'}),
    ('deeplabv3', 'mobilenetv2', (), {'backbone', 'aspp', 'classifier'}),
    ('deeplabv3plus', 'mobilenetv2', (), {'backbone', 'aspp', 'decoder', 'classifier'}),
    ('deeplabv3plus', 'xception65', (1, 2, 3), {'backbone', 'aspp', 'decoder', 'classifier'})])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_every_version_gives_logits_at_input_size(architecture, backbone, rates, heads,
                                                  output_stride):
  config = tiny_model_config(architecture, output_stride)
  config.backbone, config.atrous_rates, config.separable_conv = (backbone, rates,
                                                                 backbone == 'xception65')
  config.large_fov_features = 16
  model = create_model(config)
  images = jnp.zeros((2, 49, 83, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
  assert set(variables['params']) == heads
  logits = jax.eval_shape(lambda v: model.apply(v, images, train=False), variables)
  assert logits.shape == (2, 49, 83, 5)


def test_aspp_l_is_the_sum_of_its_atrous_classifiers():
  x = jax.random.normal(jax.random.key(0), (1, 15, 14, 6))
  head = PyramidClassifier(num_classes=3, rates=(2, 3, 5))
  params = randomized(head.init(jax.random.key(1), x)['params'], 4)
  want = sum(AtrousConv(3, 3, rate, use_bias=True).apply({'params': params[f'rate{rate}']}, x)
             for rate in (2, 3, 5))
  np.testing.assert_allclose(head.apply({'params': params}, x), want, rtol=1e-5, atol=1e-5)


def test_large_fov_sees_a_pixel_at_rate_12():
  # One active input pixel reaches the outputs fc6's 3x3 kernel at rate 12 covers: offsets
  # 0 and +-12 from it, nowhere else (fc7 is 1x1).
  x = np.zeros((1, 31, 31, 4), np.float32)
  x[0, 15, 15] = 1.0
  head = LargeFOV(features=8, rate=12)
  params = randomized(head.init(jax.random.key(0), x, train=False)['params'], 5)
  params = jax.tree.map(lambda p: jnp.abs(p), params)  # Positive: nothing cancels or clips.
  params['fc6']['conv']['bias'] = params['fc7']['conv']['bias'] = jnp.zeros(8)
  out = np.asarray(head.apply({'params': params}, x, train=False))
  reached = np.argwhere(np.abs(out[0]).sum(-1) > 0)
  assert sorted(map(tuple, reached)) == [(i, j) for i in (3, 15, 27) for j in (3, 15, 27)]


def test_v1_takes_one_fc6_rate():
  config = tiny_model_config('deeplabv1', 8)
  config.backbone, config.atrous_rates = 'vgg16', (6, 12)
  with pytest.raises(ValueError, match='model.atrous_rates'):
    create_model(config)


@pytest.mark.parametrize('backbone,torchvision_count', [
    ('resnet50', 39_638_869), ('resnet101', 58_630_997)])
def test_parameter_count_matches_torchvision(backbone, torchvision_count):
  # torchvision's deeplabv3_resnet{50,101} (21 classes, no aux head) is this model plus one
  # 3x3 256->256 conv and its BatchNorm in the head (TF DeepLab has no such conv).
  config = defaults.get_config().model
  config.architecture, config.backbone, config.multi_grid = 'deeplabv3', backbone, (1, 1, 1)
  model = create_model(config)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 65, 65, 3)), train=False))
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  assert count + 3 * 3 * 256 * 256 + 2 * 256 == torchvision_count


def eval_conv():
  return functools.partial(ConvBN, train=False)


def conv_bn_relu(params, x, rate=1):
  """conv (no bias) then BatchNorm with zero mean / unit variance statistics, then ReLU."""
  kernel = params['conv']['kernel']
  y = AtrousConv(kernel.shape[-1], kernel.shape[0], rate=rate).apply(
      {'params': {'kernel': kernel}}, x)
  y = y / np.sqrt(1 + 1e-5) * params['bn']['scale'] + params['bn']['bias']
  return np.maximum(y, 0)


def randomized(variables, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape), v.dtype), variables)


def test_aspp_is_its_definition():
  x = jax.random.normal(jax.random.key(0), (2, 9, 11, 6))
  aspp = ASPP(features=4, atrous_rates=(2, 3, 5), dropout_rate=0.5, conv=eval_conv())
  params = randomized(aspp.init(jax.random.key(1), x, train=False)['params'], 2)
  stats = jax.tree.map(lambda p: {'mean': jnp.zeros_like(p['bn']['bias']),
                                  'var': jnp.ones_like(p['bn']['bias'])}, params,
                       is_leaf=lambda p: isinstance(p, dict) and 'bn' in p)
  batch_stats = {name: {'bn': value} for name, value in stats.items()}
  got = aspp.apply({'params': params, 'batch_stats': batch_stats}, x, train=False)

  branches = [conv_bn_relu(params['conv1x1'], x)]
  branches += [conv_bn_relu(params[f'atrous{i + 1}'], x, rate)
               for i, rate in enumerate((2, 3, 5))]
  pooled = conv_bn_relu(params['image_pooling'], x.mean(axis=(1, 2), keepdims=True))
  branches.append(np.broadcast_to(pooled, (2, 9, 11, 4)))
  want = conv_bn_relu(params['projection'], np.concatenate(branches, axis=-1))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_decoder_is_its_definition():
  x = jax.random.normal(jax.random.key(0), (1, 5, 6, 8))
  low = jax.random.normal(jax.random.key(1), (1, 17, 21, 6))
  decoder = Decoder(low_level_features=3, features=4, conv=eval_conv())
  variables = decoder.init(jax.random.key(2), x, low)
  params = randomized(variables['params'], 3)
  got = decoder.apply({'params': params, 'batch_stats': variables['batch_stats']}, x, low)

  projected = conv_bn_relu(params['low_level_projection'], low)
  upsampled = resize_bilinear(x, (17, 21), align_corners=True)
  y = conv_bn_relu(params['conv1'], np.concatenate([upsampled, projected], axis=-1))
  want = conv_bn_relu(params['conv2'], y)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_unknown_settings_name_the_key():
  config = tiny_model_config('deeplabv3', 16)
  config.backbone = 'resnet77x'
  with pytest.raises(ValueError, match='model.backbone'):
    create_model(config)
  config = tiny_model_config('deeplabv4', 16)
  with pytest.raises(ValueError, match='model.architecture'):
    create_model(config)
