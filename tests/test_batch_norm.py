"""Our BatchNorm against flax's, and ConvBN (BatchNorm folded into the conv at inference) against
flax's BatchNorm applied after the conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax.models.batch_norm import BatchNorm
from deeplab_jax.models.layers import AtrousConv, ConvBN


def test_bfloat16_inputs_are_normalised_in_float32_and_returned_in_bfloat16():
  x = 3 * jax.random.normal(jax.random.key(0), (4, 6, 6, 3)) + 5
  norm = BatchNorm(3)
  variables = norm.init(jax.random.key(1), x)
  y, _ = norm.apply(variables, x.astype(jnp.bfloat16), mutable=['batch_stats'])
  want, _ = norm.apply(variables, x, mutable=['batch_stats'])
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), want, atol=0.05)


def test_batch_norm_has_flax_variables_statistics_and_outputs():
  x = 2 * jax.random.normal(jax.random.key(0), (3, 4, 5, 8)) + 1
  ours, theirs = BatchNorm(8, momentum=0.9, epsilon=1e-3), nn.BatchNorm(momentum=0.9, epsilon=1e-3)
  variables = ours.init(jax.random.key(1), x)
  flax_variables = theirs.init(jax.random.key(1), x, use_running_average=False)
  assert jax.tree.structure(variables) == jax.tree.structure(flax_variables)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda v: jnp.asarray(rng.uniform(0.5, 2, v.shape), v.dtype), variables)

  y, updated = ours.apply(variables, x, mutable=['batch_stats'])
  want, flax_updated = theirs.apply(variables, x, use_running_average=False,
                                    mutable=['batch_stats'])
  np.testing.assert_allclose(y, want, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), updated, flax_updated)

  multiplier, shift = ours.apply(variables, method=BatchNorm.affine)
  np.testing.assert_allclose(x * multiplier + shift,
                             theirs.apply(variables, x, use_running_average=True), atol=1e-5)


@pytest.mark.parametrize('activation', [nn.relu, nn.relu6, None, nn.sigmoid])
@pytest.mark.parametrize('train', [False, True])
def test_conv_bn_is_flax_conv_then_flax_batch_norm(train, activation):
  """Training: batch statistics, and gradients as autodiff of flax's modules gives them;
  inference: BatchNorm folded into the kernel and bias, equal to applying it after the conv."""
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 4))
  layer = ConvBN(6, 3, rate=2, stride=2, activation=activation, train=train, momentum=0.8)
  variables = layer.init(jax.random.key(1), x)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda v: jnp.asarray(rng.uniform(0.5, 2, v.shape), v.dtype), variables)
  conv = AtrousConv(6, 3, rate=2, stride=2, padding='SYMMETRIC')
  norm = nn.BatchNorm(use_running_average=not train, momentum=0.8)

  def reference(params, x):
    y = conv.apply({'params': params['conv']}, x)
    y, stats = norm.apply({'params': params['bn'], 'batch_stats': variables['batch_stats']['bn']},
                          y, mutable=['batch_stats'])
    return (activation(y) if activation else y), stats

  def ours(params, x):
    return layer.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                       mutable=['batch_stats'])

  (got, got_stats), (want, want_stats) = ours(variables['params'], x), reference(
      variables['params'], x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_stats['batch_stats']['bn']['var'],
                             want_stats['batch_stats']['var'], rtol=1e-5)
  probe = jax.random.normal(jax.random.key(2), got.shape)
  loss = lambda f: lambda p, x: jnp.sum(f(p, x)[0] * probe)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5),
               jax.grad(loss(ours), (0, 1))(variables['params'], x),
               jax.grad(loss(reference), (0, 1))(variables['params'], x))
