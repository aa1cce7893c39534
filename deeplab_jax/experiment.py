"""What training and evaluation start from: the config checked against its dataset, the dataset
prepared (by one process), and the device mesh."""

from collections.abc import Callable, Collection
import functools
import io
from typing import TypeVar

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from deeplab_jax import inference
from deeplab_jax import losses
from deeplab_jax import models
from deeplab_jax import schedules
from deeplab_jax import sharding
from deeplab_jax.config_error import ConfigError, check_splits
from deeplab_jax.data import datasets

T = TypeVar('T')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError, naming the key, for settings that cannot work (together), before
  anything is built."""
  models.check_model_config(config.model)
  devices = jax.device_count()
  for key in ('batch_size', 'eval_batch_size'):
    check_splits(key, config[key], devices, 'devices')
  schedules.create_learning_rate_schedule(config)
  losses.check_loss_config(config)
  if config.init_from and not epath.Path(config.init_from).is_dir():
    raise ConfigError('init_from', config.init_from, 'is not a directory')
  stride = config.model.output_stride
  for key in ('crop_size', 'eval_crop_size'):
    if key == 'eval_crop_size' and config[key] is None:  # Sized to the split.
      continue
    if len(config[key]) != 2 or min(config[key]) < stride + 1:
      raise ConfigError(key, config[key], f'takes (height, width), each at least output_stride '
                        f'+ 1 = {stride + 1} (k * output_stride + 1 is best)',
                        (4 * stride + 1,) * 2)
  check_focus_crops(config)
  check_eval_resize(config.eval)


def check_focus_crops(config: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError unless focus_crop_classes are class ids and the probability is one."""
  classes, num_classes = tuple(config.focus_crop_classes), config.model.num_classes
  if not all(isinstance(c, int) and 0 <= c < num_classes for c in classes):
    raise ConfigError('focus_crop_classes', classes, f'takes class ids, 0 .. {num_classes - 1}',
                      (0,))
  if not 0 <= config.focus_crop_probability <= 1:
    raise ConfigError('focus_crop_probability', config.focus_crop_probability,
                      'is a probability, from 0 to 1', 0.5)


def check_eval_resize(eval_config: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError unless eval.resize and eval.resize_size name a resizing (or none)."""
  resize, size = eval_config.resize, eval_config.resize_size
  if resize is None:
    return
  if resize not in inference.RESIZE_MODES:
    raise ConfigError('eval.resize', resize, f'is one of {inference.RESIZE_MODES} (or None)',
                      'fit_within')
  sides = 2 if resize in ('fit_within', 'fit_box') else 1
  if size is None or len(size) != sides or min(size) < 1:
    example = (2048, 512) if sides == 2 else (513,)
    raise ConfigError('eval.resize_size', size, f"eval.resize={resize!r} takes {sides} "
                      'positive side(s) in pixels', example)


def check_num_classes(config: ml_collections.ConfigDict, info: datasets.DatasetInfo) -> None:
  """Raises a ConfigError if the model's class count is not the dataset's."""
  if config.model.num_classes != info.num_classes:
    raise ConfigError('model.num_classes', config.model.num_classes,
                      f'dataset {info.name!r} has {info.num_classes} classes', info.num_classes)


@functools.cache
def _image_sizes(builder: tfds.core.DatasetBuilder, split: str, image_key: str,
                 name_key: str) -> tuple[np.ndarray, tuple[str, ...]]:
  examples = builder.as_dataset(split, decoders={image_key: tfds.decode.SkipDecoding()})
  sizes, names = [], []
  for example in tfds.as_numpy(examples):
    with Image.open(io.BytesIO(example[image_key])) as image:
      sizes.append(image.size[::-1])
    names.append(example.get(name_key, b'an image').decode())
  return np.array(sizes, np.int64).reshape(-1, 2), tuple(names)


def image_sizes(info: datasets.DatasetInfo, builder: tfds.core.DatasetBuilder,
                split: str) -> tuple[np.ndarray, tuple[str, ...]]:
  """(int [N, 2] (height, width), names) of the images of `split`: from the features' fixed
  shape (one row: every image), else from each file's header (nothing is decoded; read once)."""
  height, width = builder.info.features[info.image_key].shape[:2]
  if height is not None and width is not None:
    return np.array([[height, width]]), (f'every {info.name} image',)
  return _image_sizes(builder, split, info.image_key, info.name_key)


def eval_frames(config: ml_collections.ConfigDict, info: datasets.DatasetInfo,
                builder: tfds.core.DatasetBuilder) -> tuple[tuple[int, int], tuple[int, int]]:
  """(the frame eval images and labels are padded to, the frame the model runs in) for
  config.eval_split.

  The model's is config.eval_crop_size, which must hold every image as the model sees it
  (resized, with config.eval.resize), else a ConfigError says what would; None is the least
  k * output_stride + 1 that does. Without resizing the images' frame is the same; with it, the
  largest image's size.
  """
  sizes, names = image_sizes(info, builder, config.eval_split)
  if not len(sizes):
    raise ValueError(f'{config.eval_split} of {info.name!r} holds no images')
  resize = config.eval.resize
  model_sizes = (np.asarray(inference.resized_sizes(sizes, resize, config.eval.resize_size))
                 if resize else sizes)
  stride = config.model.output_stride
  if config.eval_crop_size is None:
    model_frame = tuple(inference.frame_size(int(side), stride) for side in model_sizes.max(axis=0))
  else:
    model_frame = tuple(config.eval_crop_size)
    too_large = (model_sizes > model_frame).any(axis=1)
    if too_large.any():
      height, width = (int(side) for side in model_sizes.max(axis=0))
      fits = tuple(inference.frame_size(side, stride) if side > crop else crop
                   for side, crop in ((height, model_frame[0]), (width, model_frame[1])))
      resized = f' resized by eval.resize={resize!r}' if resize else ''
      raise ConfigError('eval_crop_size', model_frame,
                        f'{config.eval_split} of {info.name!r} holds images up to {height}x'
                        f'{width}{resized} ({names[int(np.argmax(too_large))]}), and '
                        'evaluation pads each to the crop', fits)
  image_frame = tuple(int(side) for side in sizes.max(axis=0)) if resize else model_frame
  return image_frame, model_frame


def check_workdir(workdir: str) -> None:
  """Warns when the processes of a multi-process job would each write a local workdir of
  their own (on a TPU pod slice, use gs://)."""
  if jax.process_count() > 1 and '://' not in workdir:
    logging.warning('%s\nThe workdir %s is a local path, but this job runs %d processes: each '
                    'host writes its own copy of the checkpoints, so a restart on other hosts '
                    'would not find them. Use a gs:// workdir on a TPU pod slice.\n%s',
                    '!' * 80, workdir, jax.process_count(), '!' * 80)


def prepare(config: ml_collections.ConfigDict, splits: Collection[str] | None = None
            ) -> tuple[datasets.DatasetInfo, tfds.core.DatasetBuilder, jax.sharding.Mesh]:
  """(dataset info, its prepared TFDS builder of `splits` (default: train and eval), the device
  mesh), after checking the config.

  With several processes, process 0 builds a missing dataset while the others wait, so that
  they never write the same data_dir at once.
  """
  check_config(config)
  info = datasets.get(config.dataset, config.folder)
  check_num_classes(config, info)
  mesh = sharding.create_mesh()
  logging.info('Mesh: %s over %d devices (%d processes)', dict(mesh.shape), jax.device_count(),
               jax.process_count())
  _, builder = first_process_first(lambda: datasets.prepare_dataset(config, splits),
                                   'dataset prepared')
  eval_frames(config, info, builder)  # Checks eval_crop_size before anything trains.
  return info, builder, mesh


def first_process_first(make: Callable[[], T], name: str) -> T:
  """make() in process 0, then in the others: what it writes once (a dataset, a cache), the
  others read instead of writing the same files at once."""
  if jax.process_index() == 0:
    made = make()
  multihost_utils.sync_global_devices(name)
  if jax.process_index() > 0:
    made = make()
  return made
