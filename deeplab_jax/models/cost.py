"""What a model costs: parameters, and FLOPs of one inference as XLA's cost analysis counts them."""

import jax
import jax.numpy as jnp


def count_params(params) -> int:
  """The number of parameters (array elements) in the pytree `params`."""
  return sum(x.size for x in jax.tree.leaves(params))


def inference_cost(model, image_size: tuple[int, int]) -> tuple[float, int]:
  """(FLOPs of `model` on one image of `image_size`, parameter count); nothing is computed."""
  images = jax.ShapeDtypeStruct((1, *image_size, 3), jnp.uint8)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
  lowered = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, images)
  return lowered.cost_analysis()['flops'], count_params(variables['params'])
