"""Exports loaded back (TF for the SavedModel, `jax.export.deserialize` for StableHLO) give the
in-process model's outputs on the same images."""

import subprocess
import sys

import jax
import numpy as np
import tensorflow as tf

from conftest import REPO
from deeplab_jax import export

TINY_MODEL = ['--config.model.width=0.125', '--config.model.aspp_features=16',
              '--config.model.decoder_features=16', '--config.model.low_level_features=8',
              '--config.crop_size=(33,33)']


def padded_pixels(image, config):
  """The image padded with the mean pixel to eval_crop_size, as float32 [1, h, w, 3]."""
  height, width = config.eval_crop_size
  padded = np.broadcast_to(np.asarray(config.mean_rgb, np.float32), (1, height, width, 3)).copy()
  padded[0, :image.shape[0], :image.shape[1]] = image
  return padded


def test_savedmodel_matches_the_model(tiny_checkpoint, tmp_path):
  config, workdir = tiny_checkpoint
  model, variables = export.restore_variables(config, workdir)
  export.export_savedmodel(config, model, variables, str(tmp_path / 'savedmodel'))
  serving = tf.saved_model.load(str(tmp_path / 'savedmodel')).signatures['serving_default']

  serve = jax.jit(export.make_serving_fn(config, model, variables))
  rng = np.random.default_rng(0)
  for height, width in ((40, 50), (65, 65), (9, 64)):
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    outputs = serving(image=tf.constant(image))
    labels, probabilities = serve(padded_pixels(image, config))
    assert outputs['labels'].shape == (height, width)
    np.testing.assert_allclose(outputs['probabilities'].numpy(),
                               np.asarray(probabilities)[0, :height, :width], atol=1e-5)
    np.testing.assert_array_equal(outputs['labels'].numpy(),
                                  np.asarray(labels)[0, :height, :width])


def test_stablehlo_export_matches_the_model(tiny_checkpoint, shapes_dir, tmp_path):
  config, workdir = tiny_checkpoint
  path = tmp_path / 'model.stablehlo'
  result = subprocess.run(
      [sys.executable, '-m', 'deeplab_jax.export', '--config=configs/shapes.py', *TINY_MODEL,
       f'--config.data_dir={shapes_dir}', f'--workdir={workdir}', '--format=stablehlo',
       f'--output={path}'], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr
  exported = jax.export.deserialize(bytearray(path.read_bytes()))

  model, variables = export.restore_variables(config, workdir)
  pixels = padded_pixels(np.random.default_rng(1).integers(0, 256, (50, 60, 3)), config)
  want_labels, want_probabilities = jax.jit(export.make_serving_fn(config, model, variables))(
      pixels)
  labels, probabilities = exported.call(pixels)
  np.testing.assert_allclose(probabilities, want_probabilities, atol=1e-5)
  np.testing.assert_array_equal(labels, want_labels)
