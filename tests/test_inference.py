"""Multi-scale, flip, sliding-window and CRF inference against cases whose answers are known."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax import crf
from deeplab_jax import defaults
from deeplab_jax import inference

NUM_CLASSES = 4


def conv_model(kernel):
  """A fully convolutional stand-in: one 'SAME' convolution, NHWC -> NHWC logits."""
  return lambda x: lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def random_kernel(size, seed=0):
  return jax.random.normal(jax.random.key(seed), (size, size, 3, NUM_CLASSES))


def images(shape=(2, 23, 31, 3), seed=1):
  return jax.random.normal(jax.random.key(seed), shape)


def test_window_starts():
  assert inference.window_starts(10, 10, 5) == [0]
  assert inference.window_starts(8, 10, 5) == [0]
  assert inference.window_starts(20, 10, 5) == [0, 5, 10]
  assert inference.window_starts(23, 10, 6) == [0, 6, 12, 13]


def test_single_scale_without_flip_is_plain_inference():
  model, x = conv_model(random_kernel(3)), images()
  np.testing.assert_allclose(inference.predict_probabilities(model, x),
                             jax.nn.softmax(model(x), axis=-1), rtol=1e-6, atol=1e-7)


def test_flip_of_a_symmetric_image_with_a_mirror_symmetric_model_is_plain_inference():
  kernel = random_kernel(3)
  kernel = (kernel + kernel[:, ::-1]) / 2  # The model commutes with horizontal flips.
  model, x = conv_model(kernel), images()
  x = (x + x[:, :, ::-1]) / 2
  np.testing.assert_allclose(inference.predict_probabilities(model, x, flip=True),
                             jax.nn.softmax(model(x), axis=-1), rtol=1e-5, atol=1e-6)


def test_flip_averages_the_mirrored_prediction():
  model, x = conv_model(random_kernel(3)), images()
  mirrored = model(x[:, :, ::-1])[:, :, ::-1]
  want = (jax.nn.softmax(model(x), -1) + jax.nn.softmax(mirrored, -1)) / 2
  np.testing.assert_allclose(inference.predict_probabilities(model, x, flip=True), want,
                             rtol=1e-5, atol=1e-6)


def test_a_window_holding_the_whole_image_is_plain_inference():
  model, x = conv_model(random_kernel(3)), images()
  np.testing.assert_array_equal(
      inference.sliding_window_logits(model, x, (33, 33), (16, 16)), model(x))


def test_sliding_window_equals_whole_image_away_from_window_borders():
  radius = 2  # A 5x5 kernel reads 2 pixels beyond each output pixel.
  model, x = conv_model(random_kernel(2 * radius + 1)), images((1, 40, 53, 3))
  window, stride = (17, 21), (9, 11)
  logits = inference.sliding_window_logits(model, x, window, stride)
  # A pixel within `radius` of a window edge that is inside the image sees that window's zero
  # padding instead of the image; every other pixel must equal whole-image inference.
  affected = np.zeros(x.shape[1:3], bool)
  for top in inference.window_starts(40, window[0], stride[0]):
    for left in inference.window_starts(53, window[1], stride[1]):
      bottom, right = top + window[0], left + window[1]
      if top > 0:
        affected[top:top + radius, left:right] = True
      if bottom < 40:
        affected[bottom - radius:bottom, left:right] = True
      if left > 0:
        affected[top:bottom, left:left + radius] = True
      if right < 53:
        affected[top:bottom, right - radius:right] = True
  assert (~affected).sum() > 0.3 * affected.size
  np.testing.assert_allclose(np.asarray(logits)[0][~affected], np.asarray(model(x))[0][~affected],
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.asarray(logits)[0][affected], np.asarray(model(x))[0][affected])


def test_windows_compose_with_scales_and_flip():
  # A per-pixel model sees the same thing through any window: windows change nothing.
  model, x = conv_model(random_kernel(1)), images()
  options = dict(scales=(0.75, 1.0, 1.5), flip=True)
  np.testing.assert_allclose(
      inference.predict_probabilities(model, x, window_size=(9, 13), window_stride=(5, 7),
                                      **options),
      inference.predict_probabilities(model, x, **options), rtol=1e-5, atol=1e-6)


def test_multi_scale_averages_probabilities_of_each_scale():
  model, x = conv_model(random_kernel(1)), images()
  both = inference.predict_probabilities(model, x, scales=(0.5, 1.0))
  half = inference.predict_probabilities(model, x, scales=(0.5,))
  whole = inference.predict_probabilities(model, x, scales=(1.0,))
  np.testing.assert_allclose(both, (half + whole) / 2, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jnp.sum(both, -1), 1.0, rtol=1e-5)
  assert not np.allclose(half, whole)


def test_crf_refines_the_averaged_probabilities_of_the_real_pixels():
  # predict with a CRF is the CRF applied to plain inference's probabilities, on the images'
  # RGB pixels and within each image's size before padding.
  params = crf.CRFParams(iterations=2, bilateral_spatial_std=5.0, bilateral_colour_std=20.0)
  conv = conv_model(random_kernel(3))
  model = lambda x: conv(x / 127.5 - 1)  # Normalises its raw pixels, as our models do.
  pixels = jax.random.uniform(jax.random.key(1), (2, 23, 31, 3), maxval=255)
  sizes = jnp.array([[23, 31], [17, 20]])
  got = inference.predict_probabilities(model, pixels, crf=params, sizes=sizes)
  plain = inference.predict_probabilities(model, pixels)
  want = crf.dense_crf_batch(plain, pixels, params, sizes)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(got) - np.asarray(plain))[0].max() > 1e-3  # The CRF did something.


def test_eval_crf_config_gives_the_crf_options():
  config = defaults.get_config()
  assert inference.inference_options(config)['crf'] is None
  config.eval.crf = True
  config.eval.crf_params.iterations = 3
  assert inference.inference_options(config)['crf'] == crf.CRFParams(iterations=3)
  config.eval.crf_params.sigma = 1.0
  with pytest.raises(ValueError, match=r"config.eval.crf_params: unknown \['sigma'\]"):
    inference.inference_options(config)


def numpy_resize(x: np.ndarray, size, align_corners: bool) -> np.ndarray:
  """[H, W, C] `x` linearly interpolated to `size` by np.interp, one axis at a time: align
  corners, or half-pixel centres with the edges held."""
  for axis, new in enumerate(size):
    old = x.shape[axis]
    position = np.arange(new, dtype=np.float64)
    source = (position * (old - 1) / max(new - 1, 1) if align_corners else
              (position + 0.5) * old / new - 0.5)
    x = np.apply_along_axis(lambda line: np.interp(source, np.arange(old), line), axis, x)
  return x


@pytest.mark.parametrize('mode, target, want', [
    ('long_side', (513,), [[385, 513], [513, 385], [513, 52]]),
    ('short_side', (300,), [[300, 400], [400, 300], [2960, 300]]),
    # mmsegmentation's (2048, 512): the short side reaches 512 unless the long one hits 2048.
    ('fit_within', (2048, 512), [[512, 683], [683, 512], [2048, 208]]),
    # A (height, width) box as the image stands: portraits run smaller.
    ('fit_box', (512, 2048), [[512, 683], [512, 384], [512, 52]]),
])
def test_resized_sizes_keep_the_aspect_ratio(mode, target, want):
  sizes = [[1500, 2000], [2000, 1500], [1480, 150]]
  np.testing.assert_array_equal(inference.resized_sizes(sizes, mode, target), want)


@pytest.mark.parametrize('align_corners', [True, False])
def test_resize_to_sizes_is_bilinear_resizing_of_each_image(align_corners):
  x = np.asarray(images((2, 20, 30, 3)))
  sizes, new_sizes = np.array([[20, 30], [11, 7]]), np.array([[9, 41], [25, 13]])
  resized = np.asarray(inference.resize_to_sizes(x, sizes, new_sizes, (26, 44), align_corners))
  assert resized.shape == (2, 26, 44, 3)
  for image, (height, width), (new_height, new_width) in zip(x, sizes, new_sizes):
    want = numpy_resize(image[:height, :width], (new_height, new_width), align_corners)
    np.testing.assert_allclose(resized[0 if height == 20 else 1, :new_height, :new_width], want,
                               atol=1e-5)


@pytest.mark.parametrize('align_corners', [True, False])
def test_with_resizing_predicts_on_the_resized_image_and_scores_at_its_size(align_corners):
  """A reference of resize -> a one-convolution model -> resize back, per image in numpy."""
  kernel = random_kernel(3)
  predict_fn = lambda variables, x, sizes: inference.predict(conv_model(kernel), x)
  frame = (17, 17)
  resized_fn = inference.with_resizing(predict_fn, 'long_side', (16,), frame, align_corners)
  x = np.asarray(images((2, 40, 30, 3)))
  sizes = np.array([[40, 30], [21, 29]])  # -> 16 x 12 and 12 x 16.
  labels, probabilities = resized_fn(None, x, sizes)
  assert labels.shape == (2, 40, 30) and probabilities.shape == (2, 40, 30, NUM_CLASSES)
  for index, (height, width) in enumerate(sizes):
    small_size = np.asarray(inference.resized_sizes((height, width), 'long_side', (16,)))
    small = numpy_resize(x[index, :height, :width], small_size, align_corners)
    # The frame past the image repeats its edge (make_predict_fn then fills it with the mean).
    small = np.pad(small, [(0, frame[0] - small_size[0]), (0, frame[1] - small_size[1]),
                           (0, 0)], mode='edge')
    logits = np.asarray(conv_model(kernel)(small[None].astype(np.float32)))[0]
    small_probabilities = np.asarray(jax.nn.softmax(logits[:small_size[0], :small_size[1]]))
    want = numpy_resize(small_probabilities, (height, width), align_corners)
    np.testing.assert_allclose(probabilities[index, :height, :width], want, atol=1e-5)
    np.testing.assert_array_equal(labels[index, :height, :width], want.argmax(-1))


def test_frame_size_is_the_least_frame_that_holds_the_image():
  for step in (8, 16, 32):
    for size in range(1, 100):
      want = next(k * step + 1 for k in range(1, 100) if k * step + 1 >= size)
      assert inference.frame_size(size, step) == want, (size, step)
