"""The error for a malformed dataset file, raised while a builder reads it, and label checks."""

import numpy as np


class DataError(ValueError):
  """A dataset file is missing its pair, unreadable, or holds bad labels; the message names it."""


def check_label_values(label: np.ndarray, num_classes: int, ignore_value: int, path) -> None:
  """Raises a DataError naming `path` if a value of `label` is neither a class id nor ignored."""
  values = np.unique(label)
  bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_value)]
  if bad.size:
    raise DataError(f'{path}: label value(s) {bad.tolist()} are neither a class id '
                    f'(0..{num_classes - 1}) nor the ignore value {ignore_value}')
