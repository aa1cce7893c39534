"""Colour-coded label maps, panels of image / ground truth / prediction, a legend of the class
colours, and the normalised confusion matrix as an image."""

import numpy as np
from PIL import Image
from PIL import ImageDraw

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


def legend(class_names: tuple[str, ...], palette: np.ndarray, row_height: int = 16,
           width: int = 200) -> np.ndarray:
  """uint8 [C * row_height, width, 3]: a swatch of each class colour beside its name."""
  image = Image.new('RGB', (width, row_height * len(class_names)), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  for index, (name, colour) in enumerate(zip(class_names, np.asarray(palette))):
    top = index * row_height
    swatch = [0, top, row_height - 1, top + row_height - 1]
    draw.rectangle(swatch, fill=tuple(int(c) for c in colour))
    draw.text((row_height + 4, top + 2), name, fill=(0, 0, 0))
  return np.asarray(image)


def confusion_image(matrix: np.ndarray, cell: int = 8) -> np.ndarray:
  """uint8 [C * cell, C * cell, 3]: each ground-truth row normalised, 0 white to 1 dark blue."""
  matrix = np.asarray(matrix, np.float64)
  rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  white, blue = np.array([255, 255, 255]), np.array([8, 48, 107])
  colours = (white + rows[..., None] * (blue - white)).round().astype(np.uint8)
  return np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
