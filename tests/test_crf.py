"""The dense CRF against exact O(N^2) numpy filters and mean field, on noisy unaries, and against
Krähenbühl's C++ densecrf (pydensecrf) on a photo."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data

from deeplab_jax import crf
from deeplab_jax import crf_reference
from deeplab_jax.metrics import confusion_matrix, iou_from_confusion

build_lattice = jax.jit(crf.build_lattice)
lattice_filter = jax.jit(crf.lattice_filter)
dense_crf = jax.jit(crf.dense_crf, static_argnums=2)
TINY = crf.CRFParams(bilateral_spatial_std=3.0, bilateral_colour_std=20.0, smoothness_std=1.0,
                     iterations=5)


def random_colours(rng, height=12, width=16):
  return rng.integers(0, 256, (height, width, 3)).astype(np.float32)


def smooth_colours(rng, height=12, width=16):
  """A bilinear blend of four random colours plus noise: neighbours look alike, as in photos."""
  corners = rng.uniform(0, 255, (2, 2, 3))
  y = np.linspace(0, 1, height)[:, None, None]
  x = np.linspace(0, 1, width)[None, :, None]
  blend = ((1 - y) * (1 - x) * corners[0, 0] + (1 - y) * x * corners[0, 1]
           + y * (1 - x) * corners[1, 0] + y * x * corners[1, 1])
  return np.clip(blend + rng.normal(0, 5, blend.shape), 0, 255).astype(np.float32)


def exact_kernel(image, spatial_std, colour_std=None):
  """[N, N] Gaussian kernel over (row, column[, RGB]) of an [H, W, 3] image, self pairs included."""
  height, width, _ = image.shape
  rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  features = np.stack([rows, columns], -1).reshape(-1, 2) / spatial_std
  if colour_std is not None:
    features = np.concatenate([features, image.reshape(-1, 3) / colour_std], -1)
  squared = ((features[:, None] - features[None]) ** 2).sum(-1)
  return np.exp(-squared / 2)


def relative_error(got, want):
  return np.linalg.norm(np.asarray(got) - want) / np.linalg.norm(want)


def numpy_mean_field(probabilities, image, params):
  """Exact mean field: normalised kernels self included (densecrf), or raw sums over j != i."""
  height, width, num_classes = probabilities.shape
  kernels = [(params.bilateral_weight,
              exact_kernel(image, params.bilateral_spatial_std, params.bilateral_colour_std)),
             (params.smoothness_weight, exact_kernel(image, params.smoothness_std))]
  if params.normalize:
    kernels = [(weight, kernel / kernel.sum(1, keepdims=True)) for weight, kernel in kernels]
  else:
    kernels = [(weight, kernel - np.eye(len(kernel))) for weight, kernel in kernels]
  unary = np.log(probabilities.reshape(-1, num_classes).astype(np.float64))
  q = np.exp(unary) / np.exp(unary).sum(-1, keepdims=True)
  for _ in range(params.iterations):
    energy = unary + sum(weight * kernel @ q for weight, kernel in kernels)
    q = np.exp(energy - energy.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
  return q.reshape(height, width, num_classes)


def random_probabilities(rng, shape):
  return np.asarray(jax.nn.softmax(2 * rng.normal(size=shape), axis=-1))


@pytest.mark.parametrize('colours, normalised_tolerance, raw_tolerance', [
    (smooth_colours, 0.05, 0.4), (random_colours, 0.1, 0.5)])
def test_lattice_filter_approximates_the_exact_bilateral_filter(colours, normalised_tolerance,
                                                                raw_tolerance):
  rng = np.random.default_rng(0)
  image, values = colours(rng), rng.uniform(size=(12 * 16, 3))
  kernel = exact_kernel(image, 3.0, 20.0)
  lattice = build_lattice(crf.pixel_features(jnp.asarray(image), 3.0, 20.0))
  got = np.asarray(lattice_filter(lattice, jnp.asarray(np.c_[values, np.ones(12 * 16)])))
  # Normalised: the kernel-weighted mean, what DeepLab's CRF uses. Raw: the sum, which loses mass.
  assert relative_error(got[:, :3] / got[:, 3:], kernel @ values / kernel.sum(1, keepdims=True)
                        ) < normalised_tolerance
  assert relative_error(got[:, :3], kernel @ values) < raw_tolerance


def test_lattice_filter_has_the_gaussian_mass_on_dense_points():
  """Away from the border of a dense uniform 2-d cloud, the sum of ones is the Gaussian's mass."""
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 8, (3000, 2))
  lattice = build_lattice(jnp.asarray(points, jnp.float32))
  got = np.asarray(lattice_filter(lattice, jnp.ones((3000, 1))))[:, 0]
  want = np.exp(-((points[:, None] - points[None]) ** 2).sum(-1) / 2).sum(1)
  inside = np.all((points > 3) & (points < 5), -1)
  np.testing.assert_allclose(got[inside].mean() / want[inside].mean(), 1.0, atol=0.01)


@pytest.mark.parametrize('capacity', [40, 2 ** 27])  # One band of entries; bands of 16.
def test_splat_plan_sums_each_vertex_s_entries(capacity):
  """The plan's chunks add up to numpy's scatter-add; absent vertices and zero weights drop."""
  rng = np.random.default_rng(0)
  vertices = rng.integers(0, 40, (50, 3))
  vertices[vertices == 39] = capacity
  weights = rng.uniform(size=(50, 3)) * (rng.uniform(size=(50, 3)) > 0.1)
  values = rng.normal(size=(50, 2))
  want = np.zeros((41, 2))
  real = vertices < capacity
  np.add.at(want, vertices[real], weights[real, None] * values[np.nonzero(real)[0]])
  plan = crf.splat_plan(jnp.asarray(vertices), jnp.asarray(weights, jnp.float32), capacity,
                        chunk_size=4)
  points, chunk_weights = np.asarray(plan.points), np.asarray(plan.weights)
  sums = (chunk_weights[..., None] * values[points]).sum(1)
  got = np.zeros((41, 2))
  np.add.at(got, np.minimum(np.asarray(plan.vertices), 40), sums)
  np.testing.assert_allclose(got[:40], want[:40], atol=1e-6)
  assert np.all(sums[np.asarray(plan.vertices) == capacity] == 0)
  runs = np.ceil(np.bincount(vertices[real & (weights > 0)], minlength=39) / 4).sum()
  assert int(plan.count) >= runs  # At least each vertex's entries cut into chunks of 4.
  small = crf.splat_plan(jnp.asarray(vertices), jnp.asarray(weights, jnp.float32), capacity,
                         chunk_size=4, max_chunks=5)
  assert int(small.count) == int(plan.count) > small.vertices.shape[0]


def test_mean_field_follows_numpy():
  rng = np.random.default_rng(0)
  image, probabilities = smooth_colours(rng), random_probabilities(rng, (12, 16, 3))
  got = np.asarray(dense_crf(jnp.asarray(probabilities), jnp.asarray(image), TINY))
  want = numpy_mean_field(probabilities, image, TINY)
  # Near-ties can tip either way, so compare on average, and to how far the exact CRF moved.
  assert np.abs(got - want).mean() < 0.03
  assert relative_error(got - probabilities, want - probabilities) < 0.2
  assert np.mean(got.argmax(-1) == want.argmax(-1)) > 0.95


def test_raw_mean_field_sums_over_the_other_pixels():
  """Raw sums exclude each pixel's own term (the smoothness kernel's lattice loses some mass)."""
  rng = np.random.default_rng(1)
  image, probabilities = smooth_colours(rng), random_probabilities(rng, (12, 16, 3))
  params = dataclasses.replace(TINY, bilateral_weight=0.0, smoothness_weight=0.5, normalize=False)
  got = np.asarray(dense_crf(jnp.asarray(probabilities), jnp.asarray(image), params))
  want = numpy_mean_field(probabilities, image, params)
  assert np.abs(got - want).mean() < 0.01
  assert relative_error(got - probabilities, want - probabilities) < 0.2


def shapes_scene(rng):
  """A 64 x 64 image of three coloured shapes on a background, and its labels."""
  rows, columns = np.mgrid[:64, :64]
  labels = np.zeros((64, 64), np.int32)
  labels[8:28, 6:30] = 1
  labels[(rows - 44) ** 2 + (columns - 40) ** 2 < 14 ** 2] = 2
  labels[(rows > 6) & (rows < 30) & (columns > 36) & (rows - 6 > 58 - columns)] = 3
  palette = np.array([[30, 90, 40], [200, 40, 40], [40, 60, 210], [230, 210, 60]], np.float32)
  image = np.clip(palette[labels] + rng.normal(0, 8, (64, 64, 3)), 0, 255)
  return image.astype(np.uint8), labels


def mean_iou(labels, predictions):
  return iou_from_confusion(confusion_matrix(jnp.asarray(labels), jnp.asarray(predictions), 4))[1]


def test_crf_cleans_up_noisy_unaries():
  rng = np.random.default_rng(0)
  image, labels = shapes_scene(rng)
  logits = 2.0 * np.eye(4)[labels] + 1.5 * rng.normal(size=(64, 64, 4))
  probabilities = jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  before = mean_iou(labels, jnp.argmax(probabilities, -1))
  after = mean_iou(labels, jnp.argmax(dense_crf(probabilities, image, crf.CRFParams()), -1))
  assert before < 0.6 and after > 0.95, (before, after)


def test_batch_under_jit_ignores_padding():
  """Each padded image of a jitted, vmapped batch gets its unpadded result; padding its input."""
  rng = np.random.default_rng(0)
  images = np.stack([smooth_colours(rng, 12, 16), random_colours(rng, 12, 16)])
  probabilities = random_probabilities(rng, (2, 12, 16, 3))
  sizes = np.array([[12, 16], [9, 11]])
  run = jax.jit(crf.dense_crf_batch, static_argnums=2)
  got = np.asarray(run(jnp.asarray(probabilities), jnp.asarray(images), TINY, jnp.asarray(sizes)))
  for index, (height, width) in enumerate(sizes):
    alone = dense_crf(jnp.asarray(probabilities[index, :height, :width]),
                          jnp.asarray(images[index, :height, :width]), TINY)
    np.testing.assert_allclose(got[index, :height, :width], alone, atol=1e-5)
  np.testing.assert_array_equal(got[1, 9:], probabilities[1, 9:])
  np.testing.assert_array_equal(got[1, :, 11:], probabilities[1, :, 11:])


def test_photo_matches_densecrf():
  """DeepLab v2's settings on scikit-image's public-domain photo of a cat (300 x 451)."""
  image = data.chelsea()
  probabilities = crf_reference.blob_probabilities(np.random.default_rng(0),
                                                   *image.shape[:2], 21)
  params = crf.CRFParams(iterations=5)
  got = np.asarray(dense_crf(jnp.asarray(probabilities), jnp.asarray(image), params))
  want = crf_reference.densecrf(probabilities, image, params)
  assert np.mean(got.argmax(-1) != probabilities.argmax(-1)) > 0.05  # The CRF does something.
  assert np.mean(got.argmax(-1) == want.argmax(-1)) > 0.999
  np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize('colours, tight', [
    (random_colours, TINY),
    (smooth_colours, dataclasses.replace(TINY, vertices_per_pixel=3.0, chunks_per_pixel=0.1))])
def test_images_that_need_more_room_get_the_full_lattice(colours, tight):
  """Random colours need more lattice vertices than the fast path's room; smooth ones, with room
  for their vertices, more splat chunks than 0.1 per pixel: the full lattice, same result."""
  rng = np.random.default_rng(0)
  image, probabilities = colours(rng), random_probabilities(rng, (12, 16, 3))
  roomy = dataclasses.replace(TINY, vertices_per_pixel=6.0)
  got = dense_crf(jnp.asarray(probabilities), jnp.asarray(image), tight)
  np.testing.assert_allclose(got, dense_crf(jnp.asarray(probabilities), jnp.asarray(image), roomy),
                             atol=1e-6)
  features = crf.pixel_features(jnp.asarray(image), TINY.bilateral_spatial_std,
                                TINY.bilateral_colour_std)
  vertices_needed = int(crf.lattice_vertices(features).count)
  assert (vertices_needed > tight.vertices_per_pixel * 12 * 16) == (colours is random_colours)
