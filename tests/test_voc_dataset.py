"""The `voc2012_segmentation` builder, on tiny archives laid out as the real VOC and SBD ones."""

import os
import pathlib
import tarfile

import numpy as np
from PIL import Image
import pytest
import scipy.io
import scipy.sparse
import tensorflow_datasets as tfds

from conftest import load_config
from deeplab_jax import experiment
from deeplab_jax import predict
from deeplab_jax import train
from deeplab_jax.data import datasets
from deeplab_jax.data.datasets import downloads
from deeplab_jax.data.datasets import palettes
from deeplab_jax.data.datasets import voc

# Image sizes (height, width) of every stem, and the lists that hold them.
SIZES = {'train1': (20, 30), 'train2': (30, 20), 'val1': (24, 36), 'val2': (40, 28),
         'sbd1': (36, 40), 'sbd2': (28, 24), 'sbd3': (40, 40)}
VOC_SPLITS = {'train': ['train1', 'train2'], 'val': ['val1', 'val2']}
# train2 is in VOC train (VOC's label wins), val2 in VOC val (left out of train_aug).
SBD_SPLITS = {'train': ['train2', 'val2', 'sbd1'], 'val': ['sbd2', 'sbd3']}
# sbd1 has a VOC image but no VOC label, as thousands of SBD images do.
VOC_IMAGES = VOC_SPLITS['train'] + VOC_SPLITS['val'] + ['sbd1']


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A colour gradient, which JPEG keeps almost unchanged."""
  y, x = np.mgrid[:height, :width] / np.array([height, width])[:, None, None]
  image = (rng.uniform(60, 190, 3) + rng.uniform(-50, 50, 3) * y[..., None] +
           rng.uniform(-50, 50, 3) * x[..., None])
  return np.clip(image, 0, 255).astype(np.uint8)


def random_label(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  return rng.integers(0, len(voc.CLASS_NAMES), (height, width), dtype=np.uint8)


def save_jpeg(image: np.ndarray, path: pathlib.Path):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image).save(path, quality=95)


def save_palette_png(label: np.ndarray, path: pathlib.Path):
  """As VOC's labels: class ids are palette indices; the colours do not matter."""
  path.parent.mkdir(parents=True, exist_ok=True)
  image = Image.fromarray(label).convert('P')  # 'L' -> 'P' keeps the values as indices.
  image.putpalette(palettes.pascal(256).tobytes())
  image.save(path)


def save_sbd_mat(label: np.ndarray, path: pathlib.Path):
  """As SBD's cls/*.mat: a struct GTcls with Segmentation, Boundaries, CategoriesPresent."""
  path.parent.mkdir(parents=True, exist_ok=True)
  present = np.unique(label[label > 0])
  boundaries = np.empty((len(voc.CLASS_NAMES) - 1, 1), object)
  for index in range(len(boundaries)):
    boundaries[index, 0] = scipy.sparse.csc_matrix(label == index + 1)
  scipy.io.savemat(path, {'GTcls': {'Segmentation': label, 'Boundaries': boundaries,
                                    'CategoriesPresent': present}})


def write_archives(tmp_path: pathlib.Path, bad_label: str | None = None) -> tuple[str, dict]:
  """Writes both archives into tmp_path/manual; returns it and {stem: (image, label) per source}.

  bad_label: None, or how to spoil train1's VOC label: 'value', 'rgb' or 'size'.
  """
  rng = np.random.default_rng(0)
  voc_root = tmp_path / 'voc' / 'VOCdevkit' / 'VOC2012'
  sbd_root = tmp_path / 'sbd' / 'benchmark_RELEASE' / 'dataset'
  written = {'voc': {}, 'sbd': {}}
  for stem, (height, width) in SIZES.items():
    if stem in VOC_IMAGES:
      image = smooth_image(rng, height, width)
      save_jpeg(image, voc_root / 'JPEGImages' / f'{stem}.jpg')
      written['voc'][stem] = image, None
    if stem in VOC_SPLITS['train'] + VOC_SPLITS['val']:
      label = random_label(rng, height, width)
      label[0] = voc.IGNORE_VALUE  # VOC's void band.
      written['voc'][stem] = written['voc'][stem][0], label
      path = voc_root / 'SegmentationClass' / f'{stem}.png'
      if stem == 'train1' and bad_label == 'value':
        label = label.copy()
        label[1, 1] = 37
      if stem == 'train1' and bad_label == 'size':
        label = label[1:]
      if stem == 'train1' and bad_label == 'rgb':
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([label] * 3, axis=-1)).save(path)
      else:
        save_palette_png(label, path)
    if stem in SBD_SPLITS['train'] + SBD_SPLITS['val']:
      image = 255 - smooth_image(rng, height, width)  # Unlike VOC's copy: tells which was read.
      save_jpeg(image, sbd_root / 'img' / f'{stem}.jpg')
      label = random_label(rng, height, width)
      save_sbd_mat(label, sbd_root / 'cls' / f'{stem}.mat')
      written['sbd'][stem] = image, label
  sets = voc_root / 'ImageSets' / 'Segmentation'
  sets.mkdir(parents=True)
  for split, stems in {**VOC_SPLITS, 'trainval': VOC_SPLITS['train'] + VOC_SPLITS['val']}.items():
    (sets / f'{split}.txt').write_text(''.join(f'{stem}\n' for stem in stems))
  for split, stems in SBD_SPLITS.items():
    (sbd_root / f'{split}.txt').write_text(''.join(f'{stem}\n' for stem in stems))

  manual_dir = tmp_path / 'manual'
  manual_dir.mkdir()
  with tarfile.open(manual_dir / voc.VOC_ARCHIVE, 'w') as archive:
    archive.add(tmp_path / 'voc' / 'VOCdevkit', arcname='VOCdevkit')
  with tarfile.open(manual_dir / voc.SBD_ARCHIVE, 'w:gz') as archive:
    archive.add(tmp_path / 'sbd' / 'benchmark_RELEASE', arcname='benchmark_RELEASE')
  return str(manual_dir), written


def expected_splits(written: dict) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
  """split -> {stem: (image, label)} as the builder must store them."""
  voc_split = lambda stems: {stem: written['voc'][stem] for stem in stems}
  train_aug = voc_split(VOC_SPLITS['train'])  # train2 keeps VOC's label.
  for stem in ('sbd1', 'sbd2', 'sbd3'):  # Not val2: it is in VOC val.
    image = written['voc'][stem][0] if stem in written['voc'] else written['sbd'][stem][0]
    train_aug[stem] = image, written['sbd'][stem][1]
  return {'train': voc_split(VOC_SPLITS['train']), 'validation': voc_split(VOC_SPLITS['val']),
          'trainval': voc_split(VOC_SPLITS['train'] + VOC_SPLITS['val']),
          'train_aug': train_aug}


def no_download(*args, **kwargs):
  raise ConnectionError('no network in the tests')


@pytest.fixture(name='offline')
def fixture_offline(monkeypatch):
  """Any download fails, as on a machine with no network."""
  monkeypatch.setattr(downloads, 'check_reachable', lambda url: None)
  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract', no_download)


def prepare(tmp_path: pathlib.Path, manual_dir: str,
            splits: tuple[str, ...] = ('train_aug',)) -> tfds.core.DatasetBuilder:
  return datasets.prepare_builder(datasets.get('voc2012'), str(tmp_path / 'tfds'), manual_dir,
                                  splits)


def write_test_archive(manual_dir: pathlib.Path) -> dict[str, np.ndarray]:
  """VOC2012test.tar as the evaluation server's: JPEGs and the segmentation test list."""
  rng = np.random.default_rng(2)
  root = manual_dir.parent / 'test' / 'VOCdevkit' / 'VOC2012'
  images = {'2008_000001': smooth_image(rng, 26, 34), '2010_000002': smooth_image(rng, 30, 22)}
  for stem, image in images.items():
    save_jpeg(image, root / 'JPEGImages' / f'{stem}.jpg')
  (root / 'ImageSets' / 'Segmentation').mkdir(parents=True)
  (root / 'ImageSets' / 'Segmentation' / 'test.txt').write_text(''.join(
      f'{stem}\n' for stem in images))
  with tarfile.open(manual_dir / voc.TEST_ARCHIVE, 'w') as archive:
    archive.add(manual_dir.parent / 'test' / 'VOCdevkit', arcname='VOCdevkit')
  return images


def assert_split_holds(builder: tfds.core.DatasetBuilder, split: str,
                       expected: dict[str, tuple[np.ndarray, np.ndarray]]):
  """The split holds exactly `expected`: {stem: (image, label)}; JPEG changes pixels a little."""
  assert builder.info.splits[split].num_examples == len(expected), split
  examples = list(tfds.as_numpy(builder.as_dataset(split)))
  assert sorted(x['file_name'].decode() for x in examples) == sorted(expected), split
  for example in examples:
    stem = example['file_name'].decode()
    image, label = expected[stem]
    np.testing.assert_array_equal(example['segmentation_mask'][..., 0], label,
                                  err_msg=f'{split}/{stem}')
    assert example['image'].shape == image.shape, f'{split}/{stem}'
    error = np.abs(example['image'].astype(int) - image)
    assert error.mean() < 2 and error.max() < 16, f'{split}/{stem}'


def test_fake_sbd_labels_read_as_the_real_ones(tmp_path):
  label = random_label(np.random.default_rng(1), 5, 7)
  save_sbd_mat(label, tmp_path / 'cls.mat')
  gtcls = scipy.io.loadmat(tmp_path / 'cls.mat')['GTcls']  # As SBD's: a 1x1 struct.
  assert gtcls.shape == (1, 1)
  assert set(gtcls.dtype.names) == {'Segmentation', 'Boundaries', 'CategoriesPresent'}
  np.testing.assert_array_equal(voc.read_label(tmp_path / 'cls.mat'), label)


def test_splits_hold_what_was_written(tmp_path, offline):
  manual_dir, written = write_archives(tmp_path)
  builder = prepare(tmp_path, manual_dir, ('train_aug', 'validation'))
  assert builder.builder_config.name == 'voc_sbd'
  for split, expected in expected_splits(written).items():
    assert_split_holds(builder, split, expected)


def test_voc_splits_need_only_the_voc_archive(tmp_path, offline):
  manual_dir, written = write_archives(tmp_path)
  os.remove(os.path.join(manual_dir, voc.SBD_ARCHIVE))
  builder = prepare(tmp_path, manual_dir, ('train', 'validation'))
  assert builder.builder_config.name == 'voc'
  assert sorted(builder.info.splits) == ['train', 'trainval', 'validation']
  for split, expected in expected_splits(written).items():
    if split != 'train_aug':
      assert_split_holds(builder, split, expected)


def test_train_aug_without_sbd_names_it_and_builds_nothing(tmp_path, offline, monkeypatch):
  monkeypatch.setattr(downloads, 'check_reachable', no_download)
  manual_dir, _ = write_archives(tmp_path)
  os.remove(os.path.join(manual_dir, voc.SBD_ARCHIVE))
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    prepare(tmp_path, manual_dir, ('train_aug', 'validation'))
  message = str(error.value)
  assert f'{voc.SBD_ARCHIVE} not in the manual dir {manual_dir}' in message
  assert voc.URLS[voc.SBD_ARCHIVE] in message
  # Nothing half-way: no dataset files, and the VOC archive not even extracted (.config is TFDS's
  # note of the builder's configs).
  built = [path for path in (tmp_path / 'tfds').rglob('*')
           if path.is_file() and '.config' not in path.parts]
  assert built == [], built


def test_test_split_from_the_server_archive(tmp_path, offline):
  manual_dir, _ = write_archives(tmp_path)
  images = write_test_archive(pathlib.Path(manual_dir))
  builder = prepare(tmp_path, manual_dir, ('test',))
  assert sorted(builder.info.splits) == ['test']
  assert_split_holds(builder, 'test', {
      stem: (image, np.full(image.shape[:2], voc.IGNORE_VALUE))  # Unlabelled: all void.
      for stem, image in images.items()})


def test_test_split_without_its_archive_says_where_to_get_it(tmp_path, offline):
  manual_dir, _ = write_archives(tmp_path)
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    prepare(tmp_path, manual_dir, ('test',))
  message = str(error.value)
  assert f'{voc.TEST_ARCHIVE} not in the manual dir {manual_dir}' in message
  assert f'sign in at {voc.URLS[voc.TEST_ARCHIVE]}' in message


def test_test_split_is_built_alone(tmp_path, offline):
  with pytest.raises(datasets.DatasetUnavailableError, match='the test split is built alone'):
    prepare(tmp_path, str(tmp_path), ('train', 'test'))


@pytest.mark.parametrize('bad_label, message', [
    ('value', r'SegmentationClass/train1\.png: label value\(s\) \[37\]'),
    ('rgb', r'SegmentationClass/train1\.png: labels must be palette .* this one is RGB'),
    ('size', r'SegmentationClass/train1\.png: label is \(19, 30\) but its image'),
])
def test_bad_label_is_an_error_naming_it(tmp_path, offline, bad_label, message):
  manual_dir, _ = write_archives(tmp_path, bad_label)
  with pytest.raises(datasets.DataError, match=message):
    prepare(tmp_path, manual_dir)


def test_missing_archive_names_file_url_and_manual_dir(tmp_path, offline):
  manual_dir, _ = write_archives(tmp_path)
  os.remove(os.path.join(manual_dir, voc.VOC_ARCHIVE))
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    prepare(tmp_path, manual_dir)
  message = str(error.value)
  assert f'{voc.VOC_ARCHIVE} not in the manual dir {manual_dir}' in message
  assert voc.URLS[voc.VOC_ARCHIVE] in message
  assert 'no network in the tests' in message


def test_voc_config_trains_and_evaluates(tmp_path, offline):
  manual_dir, _ = write_archives(tmp_path)
  config = load_config('voc')
  config.data_dir = str(tmp_path / 'tfds')
  config.manual_dir = manual_dir
  config.train_split, config.eval_split = 'train_aug', 'validation'
  config.crop_size = (33, 33)
  config.eval_crop_size = (49, 49)  # The fake images are at most 40 x 40.
  config.model.backbone = 'resnet18'
  config.model.width = 0.125
  config.model.multi_grid = (1, 2)
  config.model.aspp_features = config.model.decoder_features = 16
  config.model.low_level_features = 8
  config.batch_size = config.eval_batch_size = 4
  config.num_train_steps, config.warmup_steps = 2, 0
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
  config.num_eval_images = 2
  config.init_from = None
  workdir = str(tmp_path / 'work')
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 2
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['2']

  # The test server's files, from the test split of VOC2012test.tar.
  images = write_test_archive(pathlib.Path(manual_dir))
  output = tmp_path / 'submission'
  assert predict.predict_split(config, workdir, 'test', str(output), output_format='voc') == 2
  results = output / 'results' / 'VOC2012' / 'Segmentation' / 'comp6_test_cls'
  assert sorted(os.listdir(results)) == sorted(f'{stem}.png' for stem in images)
  for stem, image in images.items():
    with Image.open(results / f'{stem}.png') as png:
      assert png.mode == 'P' and png.size == image.shape[1::-1]
      assert np.asarray(png).max() < len(voc.CLASS_NAMES)


def test_voc_submission_png_is_a_palette_png_of_class_ids(tmp_path):
  label = np.arange(21, dtype=np.uint8).repeat(3).reshape(7, 9)
  predict.write_voc(None, label, None, '2008_000001', str(tmp_path))
  with Image.open(tmp_path / predict.VOC_RESULTS / '2008_000001.png') as png:
    assert png.mode == 'P'
    np.testing.assert_array_equal(np.asarray(png), label)
    colours = np.reshape(png.getpalette(), (-1, 3))
  # VOCdevkit's colours: background, aeroplane, bicycle, ..., person (15), tvmonitor (20).
  np.testing.assert_array_equal(colours[[0, 1, 2, 3, 15, 20]], [
      (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (192, 128, 128), (0, 64, 128)])


def test_torchvision_recipe_needs_only_the_voc_archive(tmp_path, offline):
  manual_dir, _ = write_archives(tmp_path)
  os.remove(os.path.join(manual_dir, voc.SBD_ARCHIVE))
  config = load_config('voc_torchvision')
  config.data_dir, config.manual_dir = str(tmp_path / 'tfds'), manual_dir
  info, builder = datasets.prepare_dataset(config)  # Its train and eval splits.
  assert builder.builder_config.name == 'voc'
  # torchvision's protocol: the shorter side to 520; the frame is sized to the split, at k*8+1.
  image_frame, model_frame = experiment.eval_frames(config, info, builder)
  assert image_frame == (40, 36)  # val1 is 24 x 36, val2 40 x 28.
  assert model_frame == (745, 785)  # 520 x 780 and 743 x 520.
