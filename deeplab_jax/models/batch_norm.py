"""BatchNorm with `flax.linen.BatchNorm`'s variables whose inference form is an affine map, so
that it folds into the convolution before it (`layers.ConvBN`)."""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp


def batch_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """float32 mean and (biased) variance of `x` over all axes but the last."""
  axes = tuple(range(x.ndim - 1))
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axes)
  return mean, jnp.mean(jnp.square(x - mean), axes)


class BatchNorm(nn.Module):
  """BatchNorm over the last axis: batch statistics when called, running averages in `affine`.

  The variables are flax's (params scale and bias, batch_stats mean and var), so checkpoints
  and weight conversion see no difference. Under `jax.jit` over a batch-sharded global array
  the batch statistics are those of the whole global batch (cross-replica BatchNorm).
  """
  features: int
  momentum: float = 0.99
  epsilon: float = 1e-5

  def setup(self):
    shape = (self.features,)
    self.scale = self.param('scale', nn.initializers.ones, shape, jnp.float32)
    self.bias = self.param('bias', nn.initializers.zeros, shape, jnp.float32)
    self.mean = self.variable('batch_stats', 'mean', jnp.zeros, shape, jnp.float32)
    self.var = self.variable('batch_stats', 'var', jnp.ones, shape, jnp.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    """`x` normalised with its batch statistics (in float32, returned in x's dtype); updates
    the running averages."""
    mean, var = batch_statistics(x)
    if not self.is_initializing():
      self.mean.value = self.momentum * self.mean.value + (1 - self.momentum) * mean
      self.var.value = self.momentum * self.var.value + (1 - self.momentum) * var
    multiplier = self.scale * lax.rsqrt(var + self.epsilon)
    return ((x.astype(jnp.float32) - mean) * multiplier + self.bias).astype(x.dtype)

  def affine(self) -> tuple[jax.Array, jax.Array]:
    """(multiplier, shift) per channel: inference BatchNorm is x * multiplier + shift."""
    multiplier = self.scale * lax.rsqrt(self.var.value + self.epsilon)
    return multiplier, self.bias - self.mean.value * multiplier
