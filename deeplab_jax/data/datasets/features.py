"""What our segmentation builders store for each example."""

import tensorflow_datasets as tfds


def segmentation_features(image_format: str) -> tfds.features.FeaturesDict:
  """An RGB image of any size (encoded as `image_format`), its label PNG, and its file name."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
      'segmentation_mask': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
      'file_name': tfds.features.Text(),
  })
