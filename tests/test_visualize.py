"""Colour-coded masks, the class legend and the confusion-matrix image, checked by hand."""

import numpy as np

from deeplab_jax import visualize

PALETTE = np.array([(0, 0, 0), (200, 10, 10), (10, 200, 10)], np.uint8)


def test_colorize_uses_the_palette_and_white_for_ignored():
  label = np.array([[0, 1], [2, 255]])
  np.testing.assert_array_equal(visualize.colorize(label, PALETTE),
                                [[(0, 0, 0), (200, 10, 10)], [(10, 200, 10), (255, 255, 255)]])


def test_legend_has_a_swatch_per_class():
  legend = visualize.legend(('a', 'b', 'c'), PALETTE, row_height=10, width=80)
  assert legend.shape == (30, 80, 3) and legend.dtype == np.uint8
  for index, colour in enumerate(PALETTE):
    np.testing.assert_array_equal(legend[index * 10 + 5, 5], colour)
  assert (legend[:, 12:] < 128).any()  # The names are drawn in black, right of the swatches.


def test_confusion_image_normalises_each_row():
  matrix = np.array([[5, 0, 0], [0, 0, 0], [1, 1, 2]])
  image = visualize.confusion_image(matrix, cell=2)
  assert image.shape == (6, 6, 3)
  np.testing.assert_array_equal(image[0, 0], (8, 48, 107))  # Row 0 all on the diagonal.
  np.testing.assert_array_equal(image[0, 2], (255, 255, 255))
  np.testing.assert_array_equal(image[2, 2], (255, 255, 255))  # An empty row stays white.
  half = np.round(255 + 0.5 * (np.array([8, 48, 107]) - 255))
  np.testing.assert_array_equal(image[4, 4], half)  # 2 of 4 pixels of class 2.
