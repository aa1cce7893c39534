"""Input data: the dataset registry (with its TFDS builders) and the tf.data pipelines."""

from deeplab_jax.data import datasets
