"""Colour-coded label maps and side-by-side panels of image, ground truth and prediction."""

import numpy as np

IGNORE_COLOUR = (255, 255, 255)


def colorize(label: np.ndarray, palette: np.ndarray, ignore_label: int = 255) -> np.ndarray:
  """uint8 [..., 3] colours of an integer label map; ignored pixels are white."""
  label = np.asarray(label)
  colours = np.concatenate([np.asarray(palette, np.uint8), np.array([IGNORE_COLOUR], np.uint8)])
  index = np.where(label == ignore_label, len(palette), np.clip(label, 0, len(palette) - 1))
  return colours[index]


def prediction_panels(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                      palette: np.ndarray, ignore_label: int = 255) -> np.ndarray:
  """uint8 [N, H, 3W, 3]: each image (uint8 RGB), its ground truth and its prediction."""
  return np.concatenate([np.asarray(images, np.uint8), colorize(labels, palette, ignore_label),
                         colorize(predictions, palette, ignore_label)], axis=2)
