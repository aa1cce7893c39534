"""Fully connected CRF post-processing (Krähenbühl & Koltun, 2011) as in DeepLab v1/v2.

Mean-field inference with Potts compatibility and two Gaussian kernels over all pixel pairs: a
smoothness kernel on positions and a bilateral (appearance) kernel on positions and RGB colours.
Each iteration sets Q_i(l) ∝ P_i(l) exp(Σ_m w_m M_m(i, l)), where the message M_m is

  normalize=True (DeepLab):  Σ_j k_m(i, j) Q_j(l) / Σ_j k_m(i, j), the kernel-weighted mean of Q;
  normalize=False (paper):   Σ_{j≠i} k_m(i, j) Q_j(l), the raw sum.

DeepLab ran Krähenbühl's densecrf, which divides each kernel by its per-pixel sum (self term
included), and its weights (4 and 3) are meant for that: raw sums run to thousands of pixels.

The smoothness kernel is exact but for taps beyond 4 standard deviations (relative error ~1e-4):
a separable Gaussian. The bilateral kernel uses the permutohedral lattice (Adams et al., 2010) with
static shapes: each pixel is splatted onto the 6 vertices of its enclosing simplex in the 5-d
(position, colour) space, vertices are deduplicated by sorting their keys, each of the 6 lattice
axes is blurred with [1, 2, 1] / 4 between neighbours found by one more sort per axis, and values
are sliced back with the same barycentric weights. The lattice is built once per image.

Tolerance of the bilateral kernel against the exact O(N^2) sum (relative L2 error over pixels and
channels): the lattice kernel is a Gaussian widened by the simplex interpolation, and mass blurred
through vertices that no pixel touched is lost, so raw sums come out low: by ~15% on a 513 x 513
photo with DeepLab's settings, ~35% on the tests' 12 x 16 images of smooth colours and ~45% on
random colours. The losses mostly cancel in the normalised mean: ~2% off on the photo and on
smooth colours, ~8% on random colours. Mean field with normalised kernels then ends, on the
12 x 16 tests, ~0.015 from the exact probabilities on average, with ~97% of the argmaxes equal.

Memory: the lattice has room for `vertices_per_pixel` (default 6, always enough) vertices per
pixel; at 513 x 513 x 21 classes one copy of its values is 126 MiB, and the whole CRF needs about
1.1 GiB of temporaries. Photos use < 0.3 vertices per pixel, so 1 saves most of the lattice's
time; vertices beyond the room are dropped with their mass.

Padding: pass `valid` (or `sizes` to the batched version). Padded pixels carry no mass and are
moved far away in feature space, so real pixels get the same result as without padding; padded
pixels return their input.
"""

import dataclasses
import math

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

_MIN_PROBABILITY = 1e-10  # Floor under probabilities before their log: keeps unaries finite.
_FAR = 1e3  # Padded pixels sit this many standard deviations below every real feature.


@dataclasses.dataclass(frozen=True)
class CRFParams:
  """Kernel weights, standard deviations (pixels, 0..255 colour levels) and iterations.

  Defaults are DeepLab v2's for PASCAL VOC. `normalize` divides each kernel by its per-pixel sum,
  as DeepLab's densecrf does; without it messages are raw sums over the other pixels.
  """
  bilateral_weight: float = 4.0
  bilateral_spatial_std: float = 121.0  # θα.
  bilateral_colour_std: float = 5.0  # θβ.
  smoothness_weight: float = 3.0
  smoothness_std: float = 3.0  # θγ.
  iterations: int = 10
  normalize: bool = True
  vertices_per_pixel: float = 6.0  # Bilateral lattice room: 6 is always enough, photos need < 0.3.


@dataclasses.dataclass(frozen=True)
class Lattice:
  """A permutohedral lattice over N points in d dimensions with room for M vertices.

  vertices: [N, d + 1] int32 ids of each point's simplex vertices (M or more: dropped); weights:
  their barycentric weights; neighbours: [d + 1, 2, M] ids of each vertex's neighbours one step
  up and down each lattice axis, M where there is none; scale: the factor that matches the
  Gaussian's mass.
  """
  vertices: jax.Array
  weights: jax.Array
  neighbours: jax.Array
  scale: float


jax.tree_util.register_dataclass(Lattice, data_fields=['vertices', 'weights', 'neighbours'],
                                 meta_fields=['scale'])


def _elevation(dim: int, scale: float) -> np.ndarray:
  """[d + 1, d] map of R^d onto the plane Σx = 0: `scale` times an isometry."""
  matrix = np.zeros((dim + 1, dim))
  for k in range(dim):
    matrix[:k + 1, k] = 1.0
    matrix[k + 1, k] = -(k + 1)
    matrix[:, k] *= scale / math.sqrt((k + 1) * (k + 2))
  return matrix


def _axis_neighbours(keys: jax.Array, unused: jax.Array, axis: jax.Array) -> jax.Array:
  """[2, M] ids of each vertex's neighbour at `keys` + u and - u, u = 1 - (d + 1) e_axis.

  Along u every coordinate but `axis` grows by one: vertices on one line share the differences
  of the other coordinates to the next one, `step`, which counts steps along the line. Sorted by
  (line, step), neighbours are adjacent. Unused rows get steps far apart from everything.
  """
  capacity, top = keys.shape
  step = (axis + 1) % top
  line = jnp.roll(keys - keys[:, step, None], -(axis + 2), axis=1)[:, :top - 2]
  position = jnp.where(unused, 2 ** 30 + 2 * jnp.arange(capacity), keys[:, step])
  *line, position, vertex = lax.sort([*line.T, position, jnp.arange(capacity)], num_keys=top - 1)
  line = jnp.stack(line, -1)
  adjacent = jnp.all(line[1:] == line[:-1], -1) & (position[1:] == position[:-1] + 1)
  up = jnp.full(capacity, capacity).at[vertex[:-1]].set(jnp.where(adjacent, vertex[1:], capacity))
  down = jnp.full(capacity, capacity).at[vertex[1:]].set(
      jnp.where(adjacent, vertex[:-1], capacity))
  return jnp.stack([up, down])


def build_lattice(features: jax.Array, capacity: int | None = None) -> Lattice:
  """The lattice of [N, d] `features`, measured in standard deviations of the Gaussian.

  It keeps the first `capacity` vertices in sorted order (at most, and by default, N (d + 1): all
  of them) and drops the rest, with their share of each point's mass.
  """
  num_points, dim = features.shape
  top = dim + 1
  spacing = math.sqrt(2 / 3) * top  # Lattice units per standard deviation (Adams et al.).
  elevated = features.astype(jnp.float32) @ jnp.asarray(_elevation(dim, spacing).T, jnp.float32)
  # The nearest point whose coordinates are multiples of d + 1, then the simplex holding the
  # point: coordinates ranked by their offset from it, wrapped to a sum of zero.
  base = (jnp.round(elevated / top) * top).astype(jnp.int32)
  offset = elevated - base
  index = jnp.arange(top)
  larger = (offset[:, None, :] > offset[:, :, None]) | (
      (offset[:, None, :] == offset[:, :, None]) & (index[None, :] < index[:, None]))
  rank = larger.sum(-1) + base.sum(-1, keepdims=True) // top
  wrap = (rank < 0).astype(jnp.int32) - (rank > dim).astype(jnp.int32)
  rank, base = rank + top * wrap, base + top * wrap
  # Barycentric weights of the simplex's vertices: base + r, less d + 1 where rank > d - r.
  share = (elevated - base) / top
  spread = jax.nn.one_hot(dim - rank, top + 1) - jax.nn.one_hot(top - rank, top + 1)
  weights = jnp.einsum('nk,nkv->nv', share, spread)
  weights = weights[:, :top].at[:, 0].add(1.0 + weights[:, top])
  remainder = index[None, :, None]
  keys = base[:, None, :] + remainder - top * (rank[:, None, :] > dim - remainder)
  # Deduplicate: sort the keys (the last coordinate follows from the others), then number them.
  num_keys = num_points * top
  capacity = min(capacity or num_keys, num_keys)
  keys = keys.reshape(num_keys, top)
  *sorted_keys, order = lax.sort([keys[:, c] for c in range(dim)] + [jnp.arange(num_keys)],
                                 num_keys=dim)
  sorted_keys = jnp.stack(sorted_keys, -1)
  fresh = jnp.any(sorted_keys[1:] != sorted_keys[:-1], axis=-1)
  ids = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(fresh, dtype=jnp.int32)])
  vertices = jnp.zeros(num_keys, jnp.int32).at[order].set(ids).reshape(num_points, top)
  unique = jnp.zeros((capacity, dim), jnp.int32).at[ids].set(sorted_keys, mode='drop')
  unique = jnp.concatenate([unique, -unique.sum(-1, keepdims=True)], -1)
  unused = jnp.arange(capacity) > ids[-1]
  neighbours = jax.vmap(_axis_neighbours, (None, None, 0))(unique, unused, jnp.arange(top))
  # Splat and blur keep mass: under a uniform density a vertex holds one lattice cell's mass.
  cell_volume = top ** (dim - 1) * math.sqrt(top) / spacing ** dim
  return Lattice(vertices, weights, neighbours, (2 * math.pi) ** (dim / 2) / cell_volume)


def lattice_filter(lattice: Lattice, values: jax.Array) -> jax.Array:
  """≈ Σ_j exp(-|f_i - f_j|^2 / 2) values_j for [N, C] `values`, j = i included."""
  num_points, top = lattice.vertices.shape
  capacity = lattice.neighbours.shape[-1]
  grid = jax.ops.segment_sum(
      (lattice.weights[:, :, None] * values[:, None, :]).reshape(num_points * top, -1),
      lattice.vertices.reshape(-1), num_segments=capacity)

  def blur(axis, grid):
    up, down = (jnp.take(grid, ids, axis=0, mode='fill', fill_value=0)
                for ids in lattice.neighbours[axis])
    return 0.5 * grid + 0.25 * (up + down)

  grid = lax.fori_loop(0, top, blur, grid)
  sliced = jnp.take(grid, lattice.vertices, axis=0, mode='fill', fill_value=0)
  return lattice.scale * jnp.einsum('nv,nvc->nc', lattice.weights, sliced)


def gaussian_filter(values: jax.Array, std: float) -> jax.Array:
  """Σ_j exp(-|p_i - p_j|^2 / (2 std^2)) values_j over the pixels p of [H, W, C] `values`.

  Separable and exact but for taps beyond 4 standard deviations.
  """
  for axis in (0, 1):
    size = values.shape[axis]
    radius = min(math.ceil(4 * std), size - 1)
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * std ** 2))
    padding = [(0, 0)] * values.ndim
    padding[axis] = (radius, radius)
    padded = jnp.pad(values, padding)
    values = sum(float(tap) * lax.slice_in_dim(padded, k, k + size, axis=axis)
                 for k, tap in enumerate(taps))
  return values


def bilateral_features(image: jax.Array, spatial_std: float, colour_std: float) -> jax.Array:
  """[H * W, 5] (row, column, R, G, B) of each pixel, in standard deviations of the kernel."""
  height, width, _ = image.shape
  rows, columns = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  positions = jnp.stack([rows, columns], -1).astype(jnp.float32) / spatial_std
  colours = image.astype(jnp.float32) / colour_std
  return jnp.concatenate([positions, colours], -1).reshape(height * width, 5)


def dense_crf(probabilities: jax.Array, image: jax.Array, params: CRFParams = CRFParams(),
              valid: jax.Array | None = None) -> jax.Array:
  """[H, W, C] probabilities after the CRF, from [H, W, C] `probabilities` and [H, W, 3] `image`.

  `probabilities` are the unaries (softmax of logits; their logs are floored at log 1e-10),
  `image` RGB colours in 0..255 (uint8 or float). `valid` ([H, W] bool) marks the real pixels of
  a padded image; the others neither send nor receive messages and keep their input.
  """
  height, width, _ = probabilities.shape
  if valid is None:
    valid = jnp.ones((height, width), bool)
  mask = valid[..., None].astype(jnp.float32)
  features = bilateral_features(image, params.bilateral_spatial_std, params.bilateral_colour_std)
  features = jnp.where(valid.reshape(-1, 1), features, features.min() - _FAR)
  lattice = build_lattice(features, math.ceil(params.vertices_per_pixel * height * width))
  bilateral = lambda q: lattice_filter(lattice, q.reshape(height * width, -1)).reshape(q.shape)
  smooth = lambda q: gaussian_filter(q, params.smoothness_std)
  kernels = ((params.bilateral_weight, bilateral), (params.smoothness_weight, smooth))
  if params.normalize:  # Weights over the kernel-weighted mean, as in densecrf.
    kernels = tuple((weight / jnp.maximum(fn(mask), 1e-20), fn) for weight, fn in kernels)
  unary = jnp.log(jnp.maximum(probabilities.astype(jnp.float32), _MIN_PROBABILITY))

  def iteration(_, q):
    q = jnp.where(valid[..., None], q, 0.0)
    message = sum(weight * (fn(q) if params.normalize else fn(q) - q) for weight, fn in kernels)
    return jax.nn.softmax(unary + message, axis=-1)

  q = lax.fori_loop(0, params.iterations, iteration, jax.nn.softmax(unary, axis=-1))
  return jnp.where(valid[..., None], q, probabilities)


def dense_crf_batch(probabilities: jax.Array, images: jax.Array, params: CRFParams = CRFParams(),
                    sizes: jax.Array | None = None) -> jax.Array:
  """`dense_crf` vmapped over [B, H, W, C] probabilities and [B, H, W, 3] images.

  `sizes` ([B, 2] ints: height, width) are the images' real sizes; the rest, at the bottom and
  right, is padding.
  """
  batch, height, width, _ = probabilities.shape
  if sizes is None:
    sizes = jnp.tile(jnp.array([[height, width]]), (batch, 1))
  valid = ((jnp.arange(height)[None, :, None] < sizes[:, 0, None, None])
           & (jnp.arange(width)[None, None, :] < sizes[:, 1, None, None]))
  return jax.vmap(lambda p, x, v: dense_crf(p, x, params, v))(probabilities, images, valid)
