"""`convolution.conv2d` against XLA's own convolution and its gradients (`jax.grad` of
`lax.conv_general_dilated`), for every kernel size, rate, stride, padding and grouping the
models use, and the taps it drops at large rates."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax.models import convolution
from deeplab_jax.models.convolution import (SPARSE_TAPS, conv2d, drop_padding_taps, live_share,
                                           output_size, tap_spans)
from deeplab_jax.models.layers import symmetric_padding

# (input height, width, channels, kernel, rate, stride, padding, groups, features)
CASES = [
    (13, 17, 3, 7, 1, 2, 'SYMMETRIC', 1, 8),  # ResNet's stem.
    (12, 16, 8, 3, 1, 2, 'SYMMETRIC', 1, 8),  # A strided 3x3, even input.
    (12, 16, 8, 3, 1, 2, 'SAME', 1, 8),  # XLA's SAME pads more at the end.
    (11, 9, 8, 3, 2, 1, 'SYMMETRIC', 1, 6),  # Atrous.
    (9, 11, 8, 3, 12, 1, 'SYMMETRIC', 1, 4),  # Rate past the size: only the centre tap lives.
    (9, 20, 8, 3, 12, 1, 'SYMMETRIC', 1, 4),  # Past the height only: a 1x3 kernel remains.
    (21, 23, 8, 3, 12, 1, 'SYMMETRIC', 1, 4),  # Taps mostly on padding: per-tap matmuls.
    (13, 17, 8, 3, 6, 2, 'SYMMETRIC', 1, 4),  # The same, strided.
    (12, 16, 8, 3, 4, 2, 'SAME', 1, 4),
    (12, 16, 8, 1, 1, 1, 'SYMMETRIC', 1, 5),  # 1x1.
    (12, 16, 8, 1, 1, 2, 'SAME', 1, 5),  # 1x1 strided (a shortcut).
    (10, 10, 8, 3, 2, 2, 'SYMMETRIC', 8, 8),  # Depthwise, strided, atrous.
    (9, 12, 8, 3, 1, 1, 'SYMMETRIC', 8, 8),  # Depthwise: MobileNet's.
    (12, 16, 8, 3, 1, 2, 'SAME', 8, 8),  # Depthwise, strided, XLA's SAME.
    (7, 9, 8, 3, 4, 1, 'SYMMETRIC', 8, 8),  # Depthwise, taps past the height dropped.
    (10, 10, 4, 3, 1, 1, 'SYMMETRIC', 4, 8),  # A depth multiplier of 2: XLA's.
    (10, 10, 8, 3, 3, 1, 'SYMMETRIC', 4, 8),  # Grouped.
]


def native(x, kernel, stride, padding, rate, groups):
  if padding == 'SYMMETRIC':
    padding = [symmetric_padding(kernel.shape[0], rate)] * 2
  return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                  rhs_dilation=(rate, rate),
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=groups)


def ours(x, kernel, stride, padding, rate, groups):
  if padding == 'SYMMETRIC':
    padding = (symmetric_padding(kernel.shape[0], rate),) * 2
  return conv2d(x, kernel, stride, padding, rate, groups)


@pytest.mark.parametrize('case', CASES, ids=str)
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_values_and_gradients_are_xlas(case, dtype, monkeypatch):
  monkeypatch.setattr(convolution, 'MATMUL_MIN_MACS', 0)  # These small cases take the CPU paths.
  height, width, channels, size, rate, stride, padding, groups, features = case
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, height, width, channels)), dtype)
  kernel = jnp.asarray(rng.normal(size=(size, size, channels // groups, features)), dtype)
  args = (stride, padding, rate, groups)
  want = native(x, kernel, *args)
  dy = jnp.asarray(rng.normal(size=want.shape), dtype)
  loss = lambda f: lambda x, k: jnp.sum(f(x, k, *args).astype(jnp.float32) * dy)
  got = jax.jit(lambda x, k: ours(x, k, *args))(x, kernel)
  grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, kernel)
  want_grads = jax.grad(loss(native), argnums=(0, 1))(x, kernel)
  tolerance = 1e-5 if dtype == jnp.float32 else 3e-2
  for name, a, b in (('output', got, want), ('input grad', grads[0], want_grads[0]),
                     ('kernel grad', grads[1], want_grads[1])):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * np.abs(b).max(),
                               err_msg=name)
  assert grads[1].dtype == dtype


def test_taps_that_only_read_padding_are_dropped():
  kernel = jnp.arange(9.0).reshape(3, 3, 1, 1)
  # A 9x20 map at rate 12: rows beyond the centre never meet the image, columns do.
  kept, padding = drop_padding_taps(kernel, (9, 20), (1, 1), ((12, 12), (12, 12)), (12, 12))
  np.testing.assert_array_equal(kept, kernel[1:2])
  assert padding == ((0, 0), (12, 12))
  kept, padding = drop_padding_taps(kernel, (30, 30), (1, 1), ((12, 12), (12, 12)), (12, 12))
  assert kept.shape == (3, 3, 1, 1) and padding == ((12, 12), (12, 12))


def test_the_cases_cover_every_cpu_path():
  shares = []
  for height, width, _, size, rate, stride, padding, groups, _ in CASES:
    if groups == 1 and size > 1 and padding == 'SYMMETRIC':
      pads = (symmetric_padding(size, rate),) * 2
      spans = tap_spans((height, width), (size, size), (stride, stride), pads, (rate, rate))
      out = tuple(output_size(n, size, stride, pads[0], rate) for n in (height, width))
      shares.append(live_share(spans, (size, size), out))
  assert min(shares) < SPARSE_TAPS <= max(shares)  # Per-tap matmuls, and XLA's convolution.
