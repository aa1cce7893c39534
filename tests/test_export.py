"""Exports loaded back (TF for the SavedModel, `jax.export.deserialize` for StableHLO) give the
in-process model's outputs on the same images, whatever the padding holds."""

import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from conftest import tiny_shapes_flags
from deeplab_jax import checkpointing
from deeplab_jax import export
from deeplab_jax import sharding


def padded_pixels(image, config, fill=None):
  """The image padded to eval_crop_size as float32 [1, h, w, 3]: with `fill` (a pixel), or with
  random values, which the serving function must replace with the model's mean pixel."""
  height, width = config.eval_crop_size
  if fill is None:
    padded = np.random.default_rng(7).uniform(0, 255, (1, height, width, 3)).astype(np.float32)
  else:
    padded = np.broadcast_to(np.asarray(fill, np.float32), (1, height, width, 3)).copy()
  padded[0, :image.shape[0], :image.shape[1]] = image
  return padded


def restore(config, workdir):
  model, variables, _ = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  return model, jax.device_get(variables)


def test_serving_pads_with_the_mean_pixel(tiny_checkpoint):
  # The model itself run on the image padded with the recipe's mean pixel (127.5): what
  # DeepLab's evaluation does. Whatever the padding held, serving gives the same.
  config, workdir = tiny_checkpoint
  model, variables = restore(config, workdir)
  image = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
  labels, probabilities = jax.jit(export.make_serving_fn(config, model, variables))(
      padded_pixels(image, config), np.array([[40, 50]]))
  logits = model.apply(variables, padded_pixels(image, config, fill=127.5), train=False)
  np.testing.assert_allclose(probabilities, jax.nn.softmax(logits, -1), atol=1e-5)
  np.testing.assert_array_equal(labels, np.argmax(logits, -1))


@pytest.fixture(scope='module')
def savedmodel(tiny_checkpoint, tmp_path_factory):
  """(config, model, variables, the loaded serving_default signature) of the tiny checkpoint."""
  config, workdir = tiny_checkpoint
  model, variables = restore(config, workdir)
  directory = str(tmp_path_factory.mktemp('export') / 'savedmodel')
  export.export_savedmodel(config, model, variables, directory)
  return config, model, variables, tf.saved_model.load(directory).signatures['serving_default']


def test_savedmodel_matches_the_model(savedmodel):
  config, model, variables, serving = savedmodel
  serve = jax.jit(export.make_serving_fn(config, model, variables))
  rng = np.random.default_rng(0)
  # These fit in eval_crop_size (65, 65); 1 x 1 too, padded like the others.
  for height, width in ((40, 50), (65, 65), (9, 64), (1, 1)):
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    outputs = serving(image=tf.constant(image))
    labels, probabilities = serve(padded_pixels(image, config), np.array([[height, width]]))
    assert outputs['labels'].shape == (height, width)
    np.testing.assert_allclose(outputs['probabilities'].numpy(),
                               np.asarray(probabilities)[0, :height, :width], atol=1e-5)
    np.testing.assert_array_equal(outputs['labels'].numpy(),
                                  np.asarray(labels)[0, :height, :width])


def test_savedmodel_resizes_larger_images_to_fit(savedmodel):
  """A larger image is resized down (aspect kept) to fit eval_crop_size and the probabilities
  resized back: here computed with jax.image.resize, independently of TF's kernels."""
  config, model, variables, serving = savedmodel

  serve = jax.jit(export.make_serving_fn(config, model, variables))
  rng = np.random.default_rng(2)
  # eval_crop_size is (65, 65): 100x130 halves to 50x65; 200x47 scales by 0.325 to 65x15;
  # 7x300 by 13/60 to 2x65.
  for (height, width), fitted in (((100, 130), (50, 65)), ((200, 47), (65, 15)),
                                  ((7, 300), (2, 65))):
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    outputs = serving(image=tf.constant(image))

    small = jax.image.resize(image.astype(np.float32), (*fitted, 3), 'linear', antialias=True)
    _, probabilities = serve(padded_pixels(np.asarray(small), config), np.array([fitted]))
    probabilities = np.asarray(probabilities)[0, :fitted[0], :fitted[1]]
    want = np.asarray(jax.image.resize(probabilities, (height, width, probabilities.shape[-1]),
                                       'linear'))
    assert outputs['labels'].shape == (height, width)
    np.testing.assert_allclose(outputs['probabilities'].numpy(), want, atol=1e-4)
    top2 = np.sort(want, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-3  # Pixels whose argmax rounding cannot flip.
    np.testing.assert_array_equal(outputs['labels'].numpy()[clear], want.argmax(-1)[clear])
    assert clear.mean() > 0.9


def test_stablehlo_export_matches_the_model(tiny_checkpoint, shapes_dir, tmp_path):
  config, workdir = tiny_checkpoint
  path = tmp_path / 'model.stablehlo'
  result = subprocess.run(
      [sys.executable, '-m', 'deeplab_jax.export', *tiny_shapes_flags(shapes_dir),
       f'--workdir={workdir}', '--format=stablehlo', f'--output={path}'],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr
  exported = jax.export.deserialize(bytearray(path.read_bytes()))

  model, variables = restore(config, workdir)
  pixels = padded_pixels(np.random.default_rng(1).integers(0, 256, (50, 60, 3)), config)
  sizes = np.array([[50, 60]], np.int32)
  want_labels, want_probabilities = jax.jit(export.make_serving_fn(config, model, variables))(
      pixels, sizes)
  labels, probabilities = exported.call(pixels, sizes)
  np.testing.assert_allclose(probabilities, want_probabilities, atol=1e-5)
  np.testing.assert_array_equal(labels, want_labels)


def test_savedmodel_serves_a_6000x4000_photo(savedmodel):
  """A phone photo's size takes the resize path too (a second or two on a CPU)."""
  serving = savedmodel[3]
  small = np.random.default_rng(4).integers(0, 256, (40, 60, 3), dtype=np.uint8)
  outputs = serving(image=tf.constant(np.repeat(np.repeat(small, 100, 0), 100, 1)))
  assert outputs['labels'].shape == (4000, 6000)
  assert outputs['probabilities'].shape == (4000, 6000, 4)
