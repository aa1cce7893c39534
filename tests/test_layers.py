"""AtrousConv against a direct numpy dilated convolution; max pooling and bilinear resizing
against references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax.models import portable
from deeplab_jax.models.layers import (AtrousConv, ConvBN, SeparableConvBN, atrous_units,
                                       interpolation_matrix, max_pool, resize_bilinear)


def numpy_dilated_conv(x, kernel, rate, stride, pads):
  """Direct loops: out[n, i, j, o] = sum x[n, i*s + a*r - pad, j*s + b*r - pad, c] k[a, b, c, o]."""
  (top, bottom), (left, right) = pads
  x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  k = kernel.shape[0]
  span = (k - 1) * rate + 1
  out_h = (x.shape[1] - span) // stride + 1
  out_w = (x.shape[2] - span) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
  for i in range(out_h):
    for j in range(out_w):
      for a in range(k):
        for b in range(k):
          pixel = x[:, i * stride + a * rate, j * stride + b * rate, :]
          out[:, i, j, :] += pixel @ kernel[a, b]
  return out


def same_pads(size, kernel_size, rate, stride):
  """TensorFlow/XLA 'SAME': output ceil(size / stride), extra padding at the end."""
  span = (kernel_size - 1) * rate + 1
  total = max((-(-size // stride) - 1) * stride + span - size, 0)
  return total // 2, total - total // 2


@pytest.mark.parametrize('kernel_size', [1, 3])
@pytest.mark.parametrize('rate', [1, 2, 6, 12])
def test_atrous_conv_matches_numpy(kernel_size, rate):
  rng = np.random.default_rng(rate * 10 + kernel_size)
  x = rng.normal(size=(2, 17, 14, 3)).astype(np.float32)
  conv = AtrousConv(5, kernel_size, rate=rate, use_bias=True)
  variables = conv.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda v: rng.normal(size=v.shape).astype(np.float32), variables)
  got = np.asarray(conv.apply(variables, x))
  kernel, bias = (np.asarray(variables['params'][name]) for name in ('kernel', 'bias'))
  pads = (same_pads(17, kernel_size, rate, 1), same_pads(14, kernel_size, rate, 1))
  want = numpy_dilated_conv(x, kernel, rate, 1, pads) + bias
  assert got.shape == (2, 17, 14, 5)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('padding', ['SAME', 'SYMMETRIC'])
def test_strided_conv_padding(padding):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 10, 9, 2)).astype(np.float32)
  conv = AtrousConv(3, 3, rate=2, stride=2, padding=padding)
  variables = conv.init(jax.random.key(0), x)
  got = np.asarray(conv.apply(variables, x))
  if padding == 'SAME':
    pads = (same_pads(10, 3, 2, 2), same_pads(9, 3, 2, 2))
  else:
    pads = ((2, 2), (2, 2))  # (kernel - 1) * rate / 2 on each side.
  want = numpy_dilated_conv(x, np.asarray(variables['params']['kernel']), 2, 2, pads)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('stride', [1, 2])
def test_depthwise_conv_is_one_numpy_conv_per_channel(stride):
  rng = np.random.default_rng(stride)
  x = rng.normal(size=(2, 11, 10, 4)).astype(np.float32)
  conv = AtrousConv(4, 3, rate=2, stride=stride, groups=4, padding='SYMMETRIC')
  variables = conv.init(jax.random.key(0), x)
  kernel = np.asarray(variables['params']['kernel'])
  assert kernel.shape == (3, 3, 1, 4)
  got = np.asarray(conv.apply(variables, x))
  want = np.concatenate([
      numpy_dilated_conv(x[..., c:c + 1], kernel[..., c:c + 1], 2, stride, ((2, 2), (2, 2)))
      for c in range(4)], axis=-1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_separable_conv_is_depthwise_bn_relu_pointwise_bn_relu():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 9, 9, 3)).astype(np.float32)
  layer = SeparableConvBN(5, rate=2, conv=functools.partial(ConvBN, train=False))
  variables = layer.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda v: rng.uniform(0.5, 1.5, v.shape).astype(np.float32),
                           variables)
  got = np.asarray(layer.apply(variables, x))

  def conv_bn_relu(name, x, groups_of_one):
    params = variables['params'][name]
    stats = variables['batch_stats'][name]['bn']
    kernel = np.asarray(params['conv']['kernel'])
    if groups_of_one:
      y = np.concatenate([numpy_dilated_conv(x[..., c:c + 1], kernel[..., c:c + 1], 2, 1,
                                             ((2, 2), (2, 2))) for c in range(x.shape[-1])], -1)
    else:
      y = x @ kernel[0, 0]
    y = (y - stats['mean']) / np.sqrt(stats['var'] + 1e-5) * params['bn']['scale']
    return np.maximum(y + params['bn']['bias'], 0)

  want = conv_bn_relu('pointwise', conv_bn_relu('depthwise', x, True), False)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_bfloat16_compute_keeps_float32_params():
  x = jnp.ones((1, 8, 8, 3))
  conv = AtrousConv(4, 3, rate=2, dtype=jnp.bfloat16)
  variables = conv.init(jax.random.key(0), x)
  assert variables['params']['kernel'].dtype == jnp.float32
  assert conv.apply(variables, x).dtype == jnp.bfloat16


def numpy_max_pool(x, stride):
  """Direct loops: out[n, i, j, c] = max of x[n, i*s - 1 : i*s + 2, j*s - 1 : j*s + 2, c] inside."""
  height, width = ((size - 1) // stride + 1 for size in x.shape[1:3])
  out = np.empty((x.shape[0], height, width, x.shape[3]), x.dtype)
  for i in range(height):
    for j in range(width):
      rows = slice(max(i * stride - 1, 0), i * stride + 2)
      cols = slice(max(j * stride - 1, 0), j * stride + 2)
      out[:, i, j] = x[:, rows, cols].max(axis=(1, 2))
  return out


@pytest.mark.parametrize('shape', [(2, 9, 10, 3), (1, 8, 8, 2), (1, 1, 2, 1)])
@pytest.mark.parametrize('stride', [1, 2])
def test_max_pool_matches_numpy_in_both_forms(shape, stride):
  """XLA's `reduce_window`, and the shifted slices that exports trace."""
  x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  want = numpy_max_pool(x, stride)
  np.testing.assert_array_equal(max_pool(x, stride), want)
  with portable.forms():
    np.testing.assert_array_equal(max_pool(x, stride), want)


def test_interpolation_matrix_align_corners_by_hand():
  # 3 -> 5 with corners aligned: samples at 0, 0.5, 1, 1.5, 2.
  np.testing.assert_allclose(interpolation_matrix(3, 5, True), [
      [1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0.5], [0, 0, 1]])


@pytest.mark.parametrize('out_h, out_w', [
    (17, 25),  # (5 - 1) * 4 + 1 and (7 - 1) * 4 + 1: DeepLab's k * stride + 1, blended pairs.
    (14, 23),  # Not a whole factor: the matmul path.
    (3, 4)])   # Downsampling.
def test_resize_align_corners_matches_numpy_bilinear(out_h, out_w):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
  got = np.asarray(resize_bilinear(jnp.asarray(x), (out_h, out_w), align_corners=True))
  want = np.zeros((2, out_h, out_w, 3))
  for i in range(out_h):
    for j in range(out_w):
      y, xx = i * (5 - 1) / (out_h - 1), j * (7 - 1) / (out_w - 1)
      y0, x0 = min(int(y), 3), min(int(xx), 5)
      dy, dx = y - y0, xx - x0
      want[:, i, j] = ((1 - dy) * (1 - dx) * x[:, y0, x0] + (1 - dy) * dx * x[:, y0, x0 + 1] +
                       dy * (1 - dx) * x[:, y0 + 1, x0] + dy * dx * x[:, y0 + 1, x0 + 1])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Corners map onto corners.
  np.testing.assert_allclose(got[:, ::out_h - 1, ::out_w - 1], x[:, ::4, ::6], rtol=1e-6,
                             atol=1e-6)


def test_resize_half_pixel_matches_jax_image_when_upsampling():
  x = jax.random.normal(jax.random.key(0), (1, 6, 9, 2))
  got = resize_bilinear(x, (13, 20), align_corners=False)
  want = jax.image.resize(x, (1, 13, 20, 2), 'bilinear')
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_atrous_units_by_hand():
  # Xception-65's blocks after its stride-2 stem: strides 2, 2, 2, 1 (x16), 2, 1.
  strides = [2, 2, 2] + [1] * 16 + [2, 1]
  os16 = atrous_units(strides, 16, input_stride=2)
  assert os16[:3] == [(2, 1), (2, 1), (2, 1)]
  assert os16[-2:] == [(1, 1), (1, 2)]  # exit block 1 gives up its stride; block 2 at rate 2.
  os8 = atrous_units(strides, 8, input_stride=2)
  assert os8[:3] == [(2, 1), (2, 1), (1, 1)]
  assert os8[3:19] == [(1, 2)] * 16 and os8[-2:] == [(1, 2), (1, 4)]
  assert atrous_units(strides, 32, input_stride=2) == [(s, 1) for s in strides]
  with pytest.raises(ValueError, match='output_stride must be 8, 16 or 32'):
    atrous_units(strides, 4)
