"""ADE20K (SceneParsing, 150 classes) as the TFDS builder `ade20k_segmentation`.

TFDS's own `scene_parse150` reads the Places Challenge instance annotations, not the 150-class
semantic maps DeepLab trains on, so this builder reads the official SceneParsing archive
ADEChallengeData2016.zip. Labels are stored as the archive has them: 0 is "other objects" (not
scored) and 1..150 the classes; the registry's label map turns them into ignore and 0..149.
"""

import io

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from deeplab_jax.data.datasets import downloads
from deeplab_jax.data.datasets.errors import DataError
from deeplab_jax.data.datasets.features import segmentation_info

ARCHIVE = 'ADEChallengeData2016.zip'
URL = f'http://data.csail.mit.edu/places/ADEchallenge/{ARCHIVE}'
SPLIT_DIRS = {'train': 'training', 'validation': 'validation'}

# objectInfo150's classes in order (the first of each entry's names), stored labels 1..150.
CLASS_NAMES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug',
    'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter',
    'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs',
    'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier',
    'awning', 'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track',
    'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet',
    'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer',
    'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag',
    'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name', 'microwave',
    'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood',
    'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate',
    'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag')

# The colours commonly used for ADE20K (as in mmsegmentation), one per class.
PALETTE = np.array([
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
    (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
    (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
    (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
    (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
    (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
    (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
    (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
    (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
    (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
    (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255)], np.uint8)

HOW_TO_GET = (
    f'ADE20K is the SceneParsing archive {ARCHIVE} ({URL}). It is downloaded when missing; '
    'without network access, download it elsewhere and put it, as it is, in the manual '
    'directory (--config.manual_dir, default <data_dir>/downloads/manual).')


def _read_image(path: epath.Path) -> tuple[bytes | np.ndarray, tuple[int, int]]:
  """(the JPEG's bytes, or its pixels as RGB where it is grayscale or CMYK; its (h, w))."""
  data = path.read_bytes()
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()  # Decodes it all: a truncated file fails here, not when training.
      size = image.height, image.width
      if image.format == 'JPEG' and image.mode == 'RGB':
        return data, size
      return np.asarray(image.convert('RGB')), size
  except (OSError, SyntaxError) as error:  # PIL's errors for unreadable or truncated files.
    raise DataError(f'ADE20K image {path} cannot be read: {error}') from error


def _read_label(path: epath.Path, image_size: tuple[int, int]) -> np.ndarray:
  """The [h, w, 1] uint8 label of an image of `image_size` (h, w), checked."""
  try:
    with Image.open(path) as label_file:
      label = np.asarray(label_file)
  except (OSError, SyntaxError) as error:
    raise DataError(f'ADE20K label {path} cannot be read: {error}') from error
  if label.ndim != 2 or label.dtype != np.uint8:
    raise DataError(f'ADE20K label {path} is not a single-channel 8-bit PNG '
                    f'(shape {label.shape}, {label.dtype})')
  if label.shape != image_size:
    raise DataError(f'ADE20K label {path} is {label.shape[0]}x{label.shape[1]} but its image '
                    f'is {image_size[0]}x{image_size[1]}')
  if label.max() > len(CLASS_NAMES):
    raise DataError(f'ADE20K label {path} holds the value {label.max()}; stored labels are '
                    f'0..{len(CLASS_NAMES)}')
  return label[..., None]


class Ade20kSegmentation(tfds.core.GeneratorBasedBuilder):
  """ADE20K SceneParsing: 20,210 training and 2,000 validation images, 150 classes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

  def _info(self) -> tfds.core.DatasetInfo:
    return segmentation_info(self, __doc__, 'jpeg', 'http://sceneparsing.csail.mit.edu/')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = downloads.extract_or_download(dl_manager, {ARCHIVE: URL})[ARCHIVE]
    root = root / 'ADEChallengeData2016'
    return {split: self._generate_examples(root / 'images' / folder,
                                           root / 'annotations' / folder)
            for split, folder in SPLIT_DIRS.items()}

  def _generate_examples(self, image_dir: epath.Path, label_dir: epath.Path):
    images = {path.stem: path for path in image_dir.glob('*.jpg')}
    labels = {path.stem: path for path in label_dir.glob('*.png')}
    if not images:
      raise DataError(f'ADE20K: no images in {image_dir}')
    if unlabelled := sorted(images.keys() - labels.keys()):
      raise DataError(f'ADE20K image {images[unlabelled[0]]} has no label '
                      f'{label_dir / unlabelled[0]}.png')
    if orphans := sorted(labels.keys() - images.keys()):
      raise DataError(f'ADE20K label {labels[orphans[0]]} has no image '
                      f'{image_dir / orphans[0]}.jpg')
    for stem in sorted(images):
      image, size = _read_image(images[stem])
      yield stem, {'image': image, 'segmentation_mask': _read_label(labels[stem], size),
                   'file_name': stem}
