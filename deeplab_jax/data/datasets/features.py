"""What our segmentation builders store for each example, and the dataset info that says so."""

import tensorflow_datasets as tfds


def segmentation_features(image_format: str) -> tfds.features.FeaturesDict:
  """An RGB image of any size (encoded as `image_format`), its label PNG, and its file name."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
      'segmentation_mask': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
      'file_name': tfds.features.Text(),
  })


def segmentation_info(builder: tfds.core.GeneratorBasedBuilder, description: str,
                      image_format: str, homepage: str | None = None) -> tfds.core.DatasetInfo:
  """The `_info` of a builder of `segmentation_features`."""
  return builder.dataset_info_from_configs(
      description=description, features=segmentation_features(image_format),
      supervised_keys=('image', 'segmentation_mask'), homepage=homepage)
