"""ResNet backbones: atrous schedule by hand, and the stride of every returned feature."""

import functools
import math

import jax
import jax.numpy as jnp
import pytest

from deeplab_jax.models.layers import ConvBN
from deeplab_jax.models.resnet import ResNet, atrous_schedule

R50 = (3, 4, 6, 3)


def test_schedule_output_stride_32_has_no_atrous():
  assert atrous_schedule(R50, 32, (1, 1, 1)) == [
      (1, (1, 1, 1)), (2, (1,) * 4), (2, (1,) * 6), (2, (1, 1, 1))]


def test_schedule_output_stride_16_multi_grid():
  # DeepLab v3: block4 at rate 2 with multi-grid (1, 2, 4) gives unit rates (2, 4, 8).
  assert atrous_schedule(R50, 16, (1, 2, 4)) == [
      (1, (1, 1, 1)), (2, (1,) * 4), (2, (1,) * 6), (1, (2, 4, 8))]


def test_schedule_output_stride_8_multi_grid():
  assert atrous_schedule(R50, 8, (1, 2, 4)) == [
      (1, (1, 1, 1)), (2, (1,) * 4), (1, (2,) * 6), (1, (4, 8, 16))]


def test_schedule_torchvision_policy():
  # replace_stride_with_dilation=[False, True, True]: a dilated layer's first block keeps the
  # previous dilation (torchvision's `previous_dilation`).
  assert atrous_schedule(R50, 8, (1, 1, 1), keep_rate_in_first_unit=True) == [
      (1, (1, 1, 1)), (2, (1,) * 4), (1, (1,) + (2,) * 5), (1, (2, 4, 4))]


def test_schedule_rejects_bad_settings():
  with pytest.raises(ValueError, match='output_stride'):
    atrous_schedule(R50, 4, (1, 1, 1))
  with pytest.raises(ValueError, match='multi_grid'):
    atrous_schedule(R50, 16, (1, 2))


@pytest.mark.parametrize('depth,stem', [(18, 'standard'), (50, 'standard'), (101, 'standard'),
                                        (50, 'beta'), (101, 'beta')])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_feature_strides(depth, stem, output_stride):
  height, width = 65, 97
  grid = (1, 2) if depth == 18 else (1, 2, 4)
  model = ResNet(depth=depth, stem=stem, output_stride=output_stride, multi_grid=grid,
                 width=0.125, conv=functools.partial(ConvBN, train=False))
  images = jnp.zeros((2, height, width, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  features = jax.eval_shape(lambda v: model.apply(v, images), variables)
  strides = {'stem': 2, 'stage1': 4, 'stage2': min(8, output_stride),
             'stage3': min(16, output_stride), 'stage4': output_stride}
  assert set(features) == set(strides)
  expansion = 1 if depth == 18 else 4
  for name, stride in strides.items():
    channels = {'stem': 8 if stem == 'standard' else 16}.get(name)
    if channels is None:
      channels = 8 * 2**(int(name[-1]) - 1) * expansion
    assert features[name].shape == (2, math.ceil(height / stride), math.ceil(width / stride),
                                    channels), name
