"""Class weights: SegNet's median-frequency balancing against a hand computation, counted from
the label PNGs of a folder dataset the test writes, cached, and explicit weights checked."""

import json
import os

import numpy as np
import pytest

from deeplab_jax.config_error import ConfigError
from deeplab_jax.data import class_weights
from deeplab_jax.data import datasets
from test_folder_dataset import IGNORE, NUM_CLASSES, folder_config, write_pair


def test_median_frequency_weights_by_hand():
  # Class 0: 6 pixels in 2 images of 10 pixels each -> 0.3; class 1: 2 in one image -> 0.2;
  # class 2: 5 in one image -> 0.5; class 3 never appears. Median 0.3.
  weights = class_weights.median_frequency_weights([6, 2, 5, 0], [20, 10, 10, 0])
  np.testing.assert_allclose(weights, [1.0, 1.5, 0.6, 0.0], rtol=1e-6)


def test_median_frequency_from_the_training_labels_is_cached(tmp_path):
  root = tmp_path / 'folder'
  labels = [write_pair(root, f'image{index}', size, index)[1]
            for index, size in enumerate([(8, 9), (5, 7), (6, 6)])]
  labels[1][labels[1] == 2] = 0  # Class 2 is absent from one image.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(labels[1], mode='L').save(root / 'labels' / 'image1.png')
  config = folder_config(root, tmp_path / 'tfds')
  config.train_split = 'train'
  config.class_weights = 'median_frequency'
  info = datasets.get('folder', config.folder)
  builder = datasets.prepare_builder(info, config.data_dir)

  # Independently: per class, its pixels over all the pixels of the images holding it.
  pixels = np.array([sum(np.sum(label == c) for label in labels) for c in range(NUM_CLASSES)])
  totals = np.array([sum(label.size for label in labels if np.any(label == c))
                     for c in range(NUM_CLASSES)])
  frequency = pixels / totals
  expected = np.median(frequency) / frequency
  assert not np.allclose(expected, 1)
  weights = class_weights.class_weights(config, info, builder)
  np.testing.assert_allclose(weights, expected, rtol=1e-5)
  config.median_frequency_power = 0.5  # Tempered: the square roots.
  np.testing.assert_allclose(class_weights.class_weights(config, info, builder),
                             np.sqrt(expected), rtol=1e-5)
  config.median_frequency_power = 1.0

  [cache] = [name for name in os.listdir(builder.data_dir) if name.startswith('label_histogram')]
  cache = os.path.join(builder.data_dir, cache)
  with open(cache) as file:
    saved = json.load(file)
  assert saved == {'pixels': pixels.tolist(), 'image_pixels': totals.tolist()}
  saved['pixels'][0] *= 2  # The cache is what is read from now on.
  with open(cache, 'w') as file:
    json.dump(saved, file)
  assert class_weights.class_weights(config, info, builder)[0] != weights[0]
  assert IGNORE not in range(NUM_CLASSES)


@pytest.mark.parametrize('value', ['median', (1.0, 2.0), (1.0, -1.0, 2.0), (1.0, 'a', 2.0), 3.0])
def test_bad_class_weights_are_config_errors(tmp_path, value):
  root = tmp_path / 'folder'
  write_pair(root, 'image0', (5, 5), 0)
  config = folder_config(root, tmp_path / 'tfds')
  config.class_weights = value
  info = datasets.get('folder', config.folder)
  with pytest.raises(ConfigError, match='config.class_weights='):
    class_weights.class_weights(config, info, datasets.prepare_builder(info, config.data_dir))


@pytest.mark.parametrize('power', [-0.5, float('inf')])
def test_bad_median_frequency_powers_are_config_errors(tmp_path, power):
  root = tmp_path / 'folder'
  write_pair(root, 'image0', (5, 5), 0)
  config = folder_config(root, tmp_path / 'tfds')
  config.class_weights = 'median_frequency'
  config.median_frequency_power = power
  info = datasets.get('folder', config.folder)
  with pytest.raises(ConfigError, match='config.median_frequency_power='):
    class_weights.class_weights(config, info, datasets.prepare_builder(info, config.data_dir))


def test_explicit_weights_pass_through(tmp_path):
  root = tmp_path / 'folder'
  write_pair(root, 'image0', (5, 5), 0)
  config = folder_config(root, tmp_path / 'tfds')
  config.class_weights = (1, 0.5, 2.0)
  info = datasets.get('folder', config.folder)
  builder = datasets.prepare_builder(info, config.data_dir)
  assert class_weights.class_weights(config, info, builder) == (1.0, 0.5, 2.0)
  config.class_weights = None
  assert class_weights.class_weights(config, info, builder) is None
