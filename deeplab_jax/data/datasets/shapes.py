"""`shapes`: an embedded, procedurally generated segmentation dataset (TFDS builder, no download).

Each image holds one to three non-overlapping circles, axis-aligned squares and upright triangles
of random size, place and colour on a textured, noisy background. Colours are random, so only a
shape's form tells its class. As in PASCAL VOC, a band of pixels around every object boundary
carries the ignore value. Generation is deterministic: example i of a split is the same on every machine.
"""

import numpy as np
import tensorflow_datasets as tfds

CLASS_NAMES = ('background', 'circle', 'square', 'triangle')
IMAGE_SIZE = 64
IGNORE_LABEL = 255
SPLITS = {'train': (2_000, 1), 'validation': (250, 2)}  # name: (number of examples, seed)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
  """[size, size] low-frequency noise in [0, 1]: a random coarse grid, bilinearly upsampled."""
  grid = rng.random((cells + 1, cells + 1))
  coords = np.linspace(0, cells, size)
  lo = np.minimum(coords.astype(int), cells - 1)
  frac = coords - lo
  rows = grid[lo] * (1 - frac)[:, None] + grid[lo + 1] * frac[:, None]
  return rows[:, lo] * (1 - frac) + rows[:, lo + 1] * frac


def _shape_mask(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
  """Boolean [size, size] mask of one randomly placed and sized shape."""
  radius = rng.uniform(0.1, 0.25) * size
  cy, cx = rng.uniform(radius * 0.5, size - radius * 0.5, size=2)
  y, x = np.mgrid[:size, :size] + 0.5
  u, v = x - cx, y - cy
  if kind == 'circle':
    return u**2 + v**2 <= radius**2
  if kind == 'square':
    return np.maximum(abs(u), abs(v)) <= radius * 0.8
  # Equilateral triangle: inside three half-planes, each 0.65 * radius from the centre, which
  # gives it about the area of the square.
  normals = [(np.cos(a), np.sin(a)) for a in np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
  return np.all([u * nu + v * nv <= radius * 0.65 for nu, nv in normals], axis=0)


def ignore_boundaries(label: np.ndarray, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
  """Sets every pixel whose 3x3 neighbourhood holds another class to the ignore value."""
  padded = np.pad(label, 1, mode='edge')
  h, w = label.shape
  boundary = np.zeros(label.shape, bool)
  for dy in range(3):
    for dx in range(3):
      boundary |= padded[dy:dy + h, dx:dx + w] != label
  return np.where(boundary, ignore_label, label).astype(label.dtype)


def generate_example(rng: np.random.Generator,
                     size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """One (uint8 [size, size, 3] image, uint8 [size, size] label) pair."""
  base = rng.uniform(40, 215, size=3)
  texture = _smooth_noise(rng, size, cells=int(rng.integers(2, 8)))[..., None]
  image = base + rng.uniform(-60, 60, size=3) * (texture - 0.5) * 2
  label = np.zeros((size, size), np.uint8)
  for _ in range(rng.integers(1, 4)):
    kind = int(rng.integers(1, len(CLASS_NAMES)))
    mask = _shape_mask(rng, CLASS_NAMES[kind], size)
    if label[mask].any():  # Overlaps an earlier shape: leave it out.
      continue
    shade = _smooth_noise(rng, size, cells=3)[..., None] - 0.5
    image = np.where(mask[..., None], rng.uniform(0, 255, size=3) + 50 * shade, image)
    label[mask] = kind
  image = image + rng.normal(0, 12, size=image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), ignore_boundaries(label)


class Shapes(tfds.core.GeneratorBasedBuilder):
  """Circles, squares and triangles on textured backgrounds; builds in seconds, no download."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            'segmentation_mask': tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'segmentation_mask'))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    return {name: self._generate_examples(name, num, seed)
            for name, (num, seed) in SPLITS.items()}

  def _generate_examples(self, split: str, num_examples: int, seed: int):
    for index in range(num_examples):
      image, label = generate_example(np.random.default_rng((seed, index)))
      name = f'{split}_{index:05d}'
      yield name, {'image': image, 'segmentation_mask': label[..., None], 'file_name': name}
