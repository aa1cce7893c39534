"""Fully connected CRF post-processing (Krähenbühl & Koltun, 2011) as in DeepLab v1/v2.

Mean-field inference with Potts compatibility and two Gaussian kernels over all pixel pairs: a
smoothness kernel on positions and a bilateral (appearance) kernel on positions and RGB colours.
Each iteration sets Q_i(l) ∝ P_i(l) exp(Σ_m w_m M_m(i, l)), where the message M_m is

  normalize=True (DeepLab):  Σ_j k_m(i, j) Q_j(l) / Σ_j k_m(i, j), the kernel-weighted mean of Q;
  normalize=False (paper):   Σ_{j≠i} k_m(i, j) Q_j(l), the raw sum.

DeepLab ran Krähenbühl's densecrf, which divides each kernel by its per-pixel sum (self term
included), and its weights (4 and 3) are meant for that: raw sums run to thousands of pixels.

Both kernels use the permutohedral lattice (Adams et al., 2010), as densecrf does, with static
shapes: each pixel is splatted onto the d + 1 vertices of its enclosing simplex in the feature
space ((column, row, R, G, B) for the bilateral kernel, (column, row) for the smoothness kernel:
densecrf's order), vertices are deduplicated in a hash table, each lattice axis is blurred with
[1, 2, 1] / 4 between neighbours looked up in that table, and values are sliced back with the
same barycentric weights. The lattices are built once per image. This is densecrf's arithmetic:
on photos the probabilities agree with pydensecrf's to ~1e-5 (tests/test_crf.py,
benchmarks/crf.py).

Tolerance of the lattice against the exact O(N^2) sum (relative L2 error over pixels and
channels): the lattice kernel is a Gaussian widened by the simplex interpolation, and mass blurred
through vertices that no pixel touched is lost, so raw sums come out low: by ~15% on a 513 x 513
photo with DeepLab's settings, ~35% on the tests' 12 x 16 images of smooth colours and ~45% on
random colours. The losses mostly cancel in the normalised mean: ~2% off on the photo and on
smooth colours, ~8% on random colours. Mean field with normalised kernels then ends, on the
12 x 16 tests, ~0.015 from the exact probabilities on average, with ~97% of the argmaxes equal.

Cost: the bilateral lattice's size is the image's: photos use 0.18-0.33 vertices per pixel, noise
up to 6. The CRF works on a lattice with room for `vertices_per_pixel` (default 0.5) per pixel,
and splats by gathers (`splat_plan`: XLA:CPU scatters one row at a time) with room for
`chunks_per_pixel` (default 1.5; photos need 1.0-1.3) gather-sums per pixel. Only images that
need more take the full room (6 vertices per pixel; at 513 x 513 x 21 classes one copy of its
values is 126 MiB) and a plain scatter: the same result either way.

Padding: pass `size` (or `sizes` to the batched version). Padded pixels carry no mass and take
the features of the nearest real pixel, adding no lattice vertex, so real pixels get the same
result as without padding; padded pixels return their input.
"""

import dataclasses
import math
from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

_MIN_PROBABILITY = 1e-10  # Floor under probabilities before their log: keeps unaries finite.


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
  vertices_per_pixel: float = 0.5  # Bilateral lattice room of the fast path: photos need < 0.35.
  chunks_per_pixel: float = 1.5  # Its splat's room (`splat_plan`): photos need < 1.3.


_CHUNK = 8  # Entries per gather-sum of the splat (`SplatPlan`).


class SplatPlan(NamedTuple):
  """The splat as gathers: chunk c adds Σ_k weights[c, k] values[points[c, k]] to vertex
  vertices[c]. points, weights: [C, K]; vertices: [C] (M for an unused chunk); count: chunks
  needed, which may exceed C (the plan then drops entries: callers check)."""
  points: jax.Array
  weights: jax.Array
  vertices: jax.Array
  count: jax.Array


@dataclasses.dataclass(frozen=True)
class Lattice:
  """A permutohedral lattice over N points in d dimensions with room for M vertices.

  vertices: [N, d + 1] int32 ids of each point's simplex vertices, M for one that was dropped;
  weights: their barycentric weights (zero for points that carry no mass); neighbours:
  [d + 1, 2, M + 1] ids of each vertex's neighbours one step up and down each lattice axis, M
  where there is none; plan: the splat's `SplatPlan`; scale: the factor that matches the
  Gaussian's mass. Id M is the absent vertex, whose values stay zero, so every lookup is in
  bounds.
  """
  vertices: jax.Array
  weights: jax.Array
  neighbours: jax.Array
  plan: SplatPlan
  scale: float


jax.tree_util.register_dataclass(
    Lattice, data_fields=['vertices', 'weights', 'neighbours', 'plan'], meta_fields=['scale'])


def _elevation(dim: int, scale: float) -> np.ndarray:
  """[d + 1, d] map of R^d onto the plane Σx = 0: `scale` times an isometry."""
  matrix = np.zeros((dim + 1, dim))
  for k in range(dim):
    matrix[:k + 1, k] = 1.0
    matrix[k + 1, k] = -(k + 1)
    matrix[:, k] *= scale / math.sqrt((k + 1) * (k + 2))
  return matrix


class Simplices(NamedTuple):
  """Each point's simplex in a lattice, and a hash table of the lattice's vertices.

  vertices: [N, d + 1] ids of each point's vertices; weights: their barycentric weights; keys:
  [N (d + 1), d + 1] the vertices' keys by id (rows from `count` on are padding); table: [T] the
  vertex id in each slot of an open-addressing hash table (-1: empty), probed `rounds` times.
  """
  vertices: jax.Array
  weights: jax.Array
  keys: jax.Array
  count: jax.Array
  table: jax.Array
  rounds: jax.Array


def _slot(keys: jax.Array, probe: jax.Array, bits: int) -> jax.Array:
  """The table slot of [..., d + 1] `keys` at the `probe`-th try: a hash of all but the last
  coordinate (which follows from the others), different for every try."""
  h = jnp.uint32(0x811C9DC5) + probe.astype(jnp.uint32) * jnp.uint32(0x9E3779B9)
  for c in range(keys.shape[-1] - 1):
    h = (h ^ keys[..., c].astype(jnp.uint32)) * jnp.uint32(0x01000193)
  h = (h ^ (h >> 15)) * jnp.uint32(0x2C1B3C6D)
  h = (h ^ (h >> 12)) * jnp.uint32(0x297A2D39)
  return (h >> (32 - bits)).astype(jnp.int32)


def _deduplicate(keys: jax.Array, max_rounds: int = 64):
  """(ids [E], unique keys by id, count, table, rounds) of the distinct rows of [E, d + 1] `keys`.

  Open addressing in rounds: each unplaced key tries its slot for this round; the lowest entry of
  the lowest round owns a slot for good, so a key lives at the first slot of its sequence that no
  other key took first. A sort would do, but XLA:CPU sorts several operands slowly.
  """
  num_keys = keys.shape[0]
  bits = max(4, math.ceil(math.log2(2 * num_keys)))
  empty = jnp.iinfo(jnp.int32).max
  entries = jnp.arange(num_keys, dtype=jnp.int32)

  def place(state):
    table, owner, probe = state
    pending = owner < 0
    slot = jnp.where(pending, _slot(keys, probe, bits), 2 ** bits)
    table = table.at[slot].min(probe * num_keys + entries, mode='drop')
    winner = table.at[slot].get(mode='fill', fill_value=empty) % num_keys
    same = jnp.all(keys[winner] == keys, -1)
    return table, jnp.where(pending & same, winner, owner), probe + 1

  table, owner, rounds = lax.while_loop(
      lambda state: jnp.any(state[1] < 0) & (state[2] < max_rounds), place,
      (jnp.full(2 ** bits, empty), jnp.full(num_keys, -1), jnp.int32(0)))
  first = owner == entries
  order = jnp.cumsum(first, dtype=jnp.int32) - 1
  ids = jnp.where(owner < 0, num_keys, order[owner])  # Unplaced after max_rounds: dropped.
  unique = jnp.zeros_like(keys).at[jnp.where(first, order, num_keys)].set(keys, mode='drop')
  table = jnp.where(table == empty, -1, order[table % num_keys])
  return ids, unique, first.sum(), table, rounds


def _find(simplices: Simplices, queries: jax.Array, capacity: int) -> jax.Array:
  """The ids of the vertices at [..., d + 1] `queries` keys; `capacity` where there is none."""
  bits = int(math.log2(simplices.table.shape[0]))

  def probe(attempt, found):
    candidate = simplices.table[_slot(queries, attempt, bits)]
    match = (candidate >= 0) & jnp.all(simplices.keys[candidate] == queries, -1)
    return jnp.where(match & (found == capacity), jnp.minimum(candidate, capacity), found)

  return lax.fori_loop(0, simplices.rounds, probe, jnp.full(queries.shape[:-1], capacity))


def lattice_vertices(features: jax.Array) -> Simplices:
  """The simplex of each of N points in the lattice of [N, d] `features` (in standard deviations).

  Vertices are deduplicated with a hash table (`Simplices`), in which neighbours are found.
  """
  num_points, dim = features.shape
  top = dim + 1
  elevated = features.astype(jnp.float32) @ jnp.asarray(_elevation(dim, _spacing(dim)).T,
                                                       jnp.float32)
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
  ids, unique, count, table, rounds = _deduplicate(keys.reshape(num_points * top, top))
  return Simplices(ids.reshape(num_points, top), weights, unique, count, table, rounds)


def splat_plan(vertices: jax.Array, weights: jax.Array, capacity: int,
               chunk_size: int = _CHUNK, max_chunks: int | None = None) -> SplatPlan:
  """The splat of points with [N, d + 1] simplex `vertices` (`capacity`: absent) and `weights`.

  XLA:CPU scatters rows one at a time, so the plan gathers instead: entries (point, vertex) are
  sorted by vertex within bands of consecutive entries (one 32-bit key each, vertex id over the
  entry's place in its band: XLA:CPU sorts one operand fast, several slowly), and each run of one
  vertex in a band is cut into chunks of `chunk_size`. Only the chunks' sums are scattered. Room
  for `max_chunks` (default: one per entry, always enough); entries of weight zero are left out.
  `chunk_size=1` keeps the entries in place, unsorted: the plain scatter.
  """
  num_points, top = vertices.shape
  num_entries = num_points * top
  max_chunks = max_chunks or num_entries
  flat = jnp.where(weights > 0, vertices, capacity).reshape(-1)
  entry_weights = jnp.append(weights.reshape(-1), 0.0)
  if chunk_size == 1:
    entries = jnp.arange(num_entries)[:, None]
    return SplatPlan(entries // top, entry_weights[entries], flat, jnp.int32(num_entries))
  band_bits = min(32 - capacity.bit_length(), max(1, math.ceil(math.log2(num_entries))))
  band = 1 << band_bits
  bands = -(-num_entries // band)
  flat = jnp.pad(flat, (0, bands * band - num_entries), constant_values=capacity)
  keys = (flat.reshape(bands, band).astype(jnp.uint32) << band_bits) | jnp.arange(
      band, dtype=jnp.uint32)
  keys = jnp.sort(keys, axis=1).reshape(-1)
  vertex = (keys >> band_bits).astype(jnp.int32)
  position = jnp.arange(bands * band, dtype=jnp.int32)
  entry = (position & -band) | (keys & (band - 1)).astype(jnp.int32)
  run_starts = (position % band == 0) | (vertex != jnp.roll(vertex, 1))
  rank = position - lax.cummax(jnp.where(run_starts, position, 0))
  used = vertex < capacity  # Sorted last in each band: never between two used chunks.
  chunk_starts = used & (rank % chunk_size == 0)
  chunk = jnp.cumsum(chunk_starts, dtype=jnp.int32) - 1
  slot = jnp.where(used, chunk * chunk_size + rank % chunk_size, max_chunks * chunk_size)
  table = jnp.full(max_chunks * chunk_size, num_entries).at[slot].set(entry, mode='drop')
  table = table.reshape(max_chunks, chunk_size)
  chunk_vertices = jnp.full(max_chunks, capacity).at[
      jnp.where(chunk_starts, chunk, max_chunks)].set(vertex, mode='drop')
  return SplatPlan(jnp.minimum(table // top, num_points - 1), entry_weights[table],
                   chunk_vertices, chunk_starts.sum())


def build_lattice(features: jax.Array, capacity: int | None = None,
                  simplices: Simplices | None = None, valid: jax.Array | None = None,
                  max_chunks: int | None = None, chunk_size: int = _CHUNK) -> Lattice:
  """The lattice of [N, d] `features`, measured in standard deviations of the Gaussian.

  It keeps the first `capacity` vertices (at most, and by default, N (d + 1): all of them) and
  drops the rest, with their share of each point's mass. Vertex `capacity` stands for every
  absent vertex: its row of the lattice's values stays zero. Points where [N] `valid` is false
  carry no mass. `simplices` is `lattice_vertices`'s result for `features`, where the caller has
  it; `max_chunks` and `chunk_size` size the splat's plan (`splat_plan`).
  """
  num_points, dim = features.shape
  top = dim + 1
  simplices = simplices or lattice_vertices(features)
  capacity = min(capacity or num_points * top, num_points * top)
  vertices = jnp.minimum(simplices.vertices, capacity)
  weights = simplices.weights if valid is None else simplices.weights * valid[:, None]
  plan = splat_plan(vertices, weights, capacity, chunk_size, max_chunks)
  keys = simplices.keys[:capacity]
  used = (jnp.arange(capacity) < simplices.count)[None]

  def axis_neighbours(axis):  # [2, M + 1]: the vertices at keys ± u, u = 1 - (d + 1) e_axis.
    step = 1 - top * jax.nn.one_hot(axis, top, dtype=jnp.int32)
    found = _find(simplices, jnp.stack([keys + step, keys - step]), capacity)
    return jnp.pad(jnp.where(used, found, capacity), ((0, 0), (0, 1)), constant_values=capacity)

  neighbours = lax.map(axis_neighbours, jnp.arange(top))
  # Splat and blur keep mass: under a uniform density a vertex holds one lattice cell's mass.
  spacing = _spacing(dim)
  cell_volume = top ** (dim - 1) * math.sqrt(top) / spacing ** dim
  return Lattice(vertices, weights, neighbours, plan, (2 * math.pi) ** (dim / 2) / cell_volume)


def _spacing(dim: int) -> float:
  """Lattice units per standard deviation (Adams et al.)."""
  return math.sqrt(2 / 3) * (dim + 1)


def splat(lattice: Lattice, values: jax.Array) -> jax.Array:
  """[M + 1, C] lattice values: each point's [N, C] `values` spread over its simplex's vertices
  by its barycentric weights; the last row, the absent vertex, is zero."""
  plan = lattice.plan
  sums = sum(plan.weights[:, k, None] * values.at[plan.points[:, k]].get(mode='promise_in_bounds')
             for k in range(plan.points.shape[1]))
  grid = jnp.zeros((lattice.neighbours.shape[-1], values.shape[-1]), values.dtype)
  return grid.at[plan.vertices].add(sums, mode='promise_in_bounds').at[-1].set(0.0)


def blur(lattice: Lattice, grid: jax.Array) -> jax.Array:
  """[1, 2, 1] / 4 along each lattice axis in turn."""
  def along(axis, grid):
    up, down = (grid.at[ids].get(mode='promise_in_bounds') for ids in lattice.neighbours[axis])
    return 0.5 * grid + 0.25 * (up + down)
  return lax.fori_loop(0, lattice.vertices.shape[1], along, grid)


def slice_values(lattice: Lattice, grid: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """[N, C]: each point's `weights` (default: barycentric) sum of its vertices' values."""
  weights = lattice.weights if weights is None else weights
  # One gather per vertex slot, summed in one fusion: not one [N, d + 1, C] gather of them all.
  return sum(weights[:, k, None] * grid.at[lattice.vertices[:, k]].get(mode='promise_in_bounds')
             for k in range(lattice.vertices.shape[1]))


def lattice_filter(lattice: Lattice, values: jax.Array) -> jax.Array:
  """≈ Σ_j exp(-|f_i - f_j|^2 / 2) values_j for [N, C] `values`, j = i included."""
  return lattice.scale * slice_values(lattice, blur(lattice, splat(lattice, values)))


def pixel_features(image: jax.Array, spatial_std: float, colour_std: float | None = None,
                   size: jax.Array | None = None) -> jax.Array:
  """[H * W, 2 or 5] (column, row[, R, G, B]) of each pixel in standard deviations of a kernel.

  densecrf's order: the lattice is not symmetric in its axes, so this keeps its results. With
  `size` (height, width), the pixels past it take the features of the nearest real pixel: they
  add no lattice vertex that the unpadded image would not have.
  """
  height, width, _ = image.shape
  rows, columns = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  if size is not None:
    rows, columns = jnp.minimum(rows, size[0] - 1), jnp.minimum(columns, size[1] - 1)
  features = [jnp.stack([columns, rows], -1).astype(jnp.float32) / spatial_std]
  if colour_std is not None:
    features.append(image[rows, columns].astype(jnp.float32) / colour_std)
  return jnp.concatenate(features, -1).reshape(height * width, -1)


def pixel_order(height: int, width: int) -> np.ndarray:
  """[H * W] pixel ids in Z order (Morton's): every run of the order covers a compact patch, so
  the splat's bands (`splat_plan`) hold a vertex's pixels in fewer runs than image rows would."""
  rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  code = np.zeros((height, width), np.int64)
  for bit in range(max(height, width).bit_length()):
    code |= ((columns >> bit) & 1) << (2 * bit) | ((rows >> bit) & 1) << (2 * bit + 1)
  return np.argsort(code.reshape(-1), kind='stable')


def dense_crf(probabilities: jax.Array, image: jax.Array, params: CRFParams = CRFParams(),
              size: jax.Array | None = None) -> jax.Array:
  """[H, W, C] probabilities after the CRF, from [H, W, C] `probabilities` and [H, W, 3] `image`.

  `probabilities` are the unaries (softmax of logits; their logs are floored at log 1e-10),
  `image` RGB colours in 0..255 (uint8 or float). `size` (height, width) marks the real pixels
  of an image padded at the bottom and right; the others neither send nor receive messages and
  keep their input.
  """
  height, width, num_classes = probabilities.shape
  num_pixels = height * width
  real = jnp.ones((height, width), bool)
  if size is not None:
    real = (jnp.arange(height)[:, None] < size[0]) & (jnp.arange(width)[None, :] < size[1])
  order = pixel_order(height, width)  # The CRF's result does not depend on the pixels' order.
  valid = real.reshape(-1)[order]
  bilateral_features = pixel_features(image, params.bilateral_spatial_std,
                                      params.bilateral_colour_std, size)[order]
  smoothness_features = pixel_features(image, params.smoothness_std, size=size)[order]
  with jax.ensure_compile_time_eval():  # The unpadded grid needs the most vertices and chunks.
    grid = lattice_vertices(pixel_features(np.zeros((height, width, 0)), params.smoothness_std)[
        order])
    smoothness_room = int(grid.count)
    smoothness_chunks = int(splat_plan(grid.vertices, grid.weights, smoothness_room).count)
  smoothness = build_lattice(smoothness_features, smoothness_room, valid=valid,
                             max_chunks=smoothness_chunks)
  unaries = probabilities.reshape(num_pixels, num_classes)[order]

  def solve(bilateral):
    return mean_field(unaries, ((params.bilateral_weight, bilateral),
                                (params.smoothness_weight, smoothness)), params)

  # Photos need a small lattice and few splat chunks; images that need more get the full room
  # and the plain scatter.
  simplices = lattice_vertices(bilateral_features)
  full_room = 6 * num_pixels
  room = math.ceil(params.vertices_per_pixel * num_pixels)
  full = lambda: build_lattice(bilateral_features, full_room, simplices, valid, chunk_size=1)
  if room >= full_room:
    q = solve(full())
  else:
    max_chunks = math.ceil(params.chunks_per_pixel * num_pixels)
    fast = build_lattice(bilateral_features, room, simplices, valid, max_chunks)
    fits = (simplices.count <= room) & (fast.plan.count <= max_chunks)
    q = lax.cond(fits, lambda: solve(fast), lambda: solve(full()))
  q = q[np.argsort(order)].reshape(probabilities.shape)
  return jnp.where(real[..., None], q, probabilities)


def mean_field(unaries: jax.Array, kernels, params: CRFParams) -> jax.Array:
  """`params.iterations` of mean field with (weight, lattice) Potts kernels over N points, from
  [N, C] probabilities."""
  unary = jnp.log(jnp.maximum(unaries.astype(jnp.float32), _MIN_PROBABILITY))
  # Each kernel's weight and scale, and densecrf's per-pixel normaliser, are folded into its
  # slice weights; points that take no part have weight zero, so they neither send nor receive.
  filters = []
  for weight, lattice in kernels:
    receive = weight * lattice.scale * lattice.weights
    if params.normalize:
      ones = jnp.ones((len(unary), 1))
      receive /= jnp.maximum(lattice_filter(lattice, ones), 1e-20)
    filters.append((lattice, receive))
  self_weight = 0.0 if params.normalize else sum(weight for weight, _ in kernels)

  def iteration(_, q):
    message = sum(slice_values(lattice, blur(lattice, splat(lattice, q)), receive)
                  for lattice, receive in filters)
    # A no-op on float32 that XLA:CPU does not fuse through: its YNNPACK fusion would take the
    # slices' sum into the softmax's and materialise every gather first (5x slower there).
    message = lax.reduce_precision(message, 8, 23)
    return jax.nn.softmax(unary + message - self_weight * q, axis=-1)

  return lax.fori_loop(0, params.iterations, iteration, jax.nn.softmax(unary, axis=-1))


def dense_crf_batch(probabilities: jax.Array, images: jax.Array, params: CRFParams = CRFParams(),
                    sizes: jax.Array | None = None) -> jax.Array:
  """`dense_crf` over [B, H, W, C] probabilities and [B, H, W, 3] images, one at a time.

  `sizes` ([B, 2] ints: height, width) are the images' real sizes; the rest, at the bottom and
  right, is padding. A loop, not vmap: each image sizes its own lattice.
  """
  batch, height, width, _ = probabilities.shape
  if sizes is None:
    sizes = jnp.tile(jnp.array([[height, width]]), (batch, 1))
  return lax.map(lambda args: dense_crf(*args[:2], params, args[2]),
                 (probabilities, images, sizes))
