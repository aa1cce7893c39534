"""Colour palettes for drawing label maps."""

import numpy as np


def pascal(num_colours: int = 256) -> np.ndarray:
  """PASCAL VOC's colour map: the bits of the class id interleaved over R, G and B."""
  palette = np.zeros((num_colours, 3), np.uint8)
  for index in range(num_colours):
    value = index
    for shift in range(7, -1, -1):
      for channel in range(3):
        palette[index, channel] |= ((value >> channel) & 1) << shift
      value >>= 3
  return palette
