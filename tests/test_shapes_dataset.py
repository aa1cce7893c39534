"""The embedded `shapes` dataset: deterministic, valid labels, an ignore band on boundaries."""

import numpy as np
import tensorflow_datasets as tfds

from deeplab_jax.data import datasets
from deeplab_jax.data.datasets import shapes


def test_ignore_band_by_hand():
  label = np.zeros((6, 6), np.uint8)
  label[2:4, 2:4] = 1
  want = np.zeros((6, 6), np.uint8)
  want[1:5, 1:5] = 255  # Every pixel touching (8-neighbourhood) the other class.
  np.testing.assert_array_equal(shapes.ignore_boundaries(label), want)


def test_generation_is_deterministic_and_varied():
  a = shapes.generate_example(np.random.default_rng((1, 7)))
  b = shapes.generate_example(np.random.default_rng((1, 7)))
  c = shapes.generate_example(np.random.default_rng((1, 8)))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], c[0])


def test_labels_hold_every_class_and_an_ignore_band():
  labels = np.stack([shapes.generate_example(np.random.default_rng((0, i)))[1]
                     for i in range(60)])
  assert set(np.unique(labels)) == {0, 1, 2, 3, 255}
  # Next to every labelled pixel of a shape lies either the same class or the ignore band.
  for label in labels:
    for dy, dx in ((0, 1), (1, 0)):
      a, b = label[:label.shape[0] - dy, :label.shape[1] - dx], label[dy:, dx:]
      touching = (a != b) & (a != 255) & (b != 255)
      assert not touching.any()


def test_builder_splits_match_the_generator(shapes_dir):
  builder = tfds.builder('shapes', data_dir=shapes_dir)
  assert builder.info.splits['train'].num_examples == 2000
  assert builder.info.splits['validation'].num_examples == 250
  info = datasets.get('shapes')
  assert info.num_classes == 4 and info.palette.shape == (4, 3)
  for example in tfds.as_numpy(builder.as_dataset('validation[:3]')):
    index = int(example['file_name'].decode().split('_')[-1])
    image, label = shapes.generate_example(np.random.default_rng((2, index)))
    np.testing.assert_array_equal(example['image'], image)
    np.testing.assert_array_equal(example['segmentation_mask'][..., 0], label)
