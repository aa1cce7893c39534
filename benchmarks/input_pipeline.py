"""Training input pipeline images/s per CPU thread on real photos, and whether a TPU host keeps up.

  python benchmarks/input_pipeline.py
  python benchmarks/input_pipeline.py --threads=1,2 --seconds=20 --batch_size=8 \
      --root=../shared/datasets/camvid --data_dir=/tmp/deeplab_jax_input_pipeline_benchmark
  python benchmarks/input_pipeline.py --formats=jpeg --threads=1 --mfu=0.5 \
      --hosts=v5e:224:8:197 --reserved_vcpus=16

Runs `input_pipeline.create_train_dataset` with the VOC recipe's augmentation (configs/voc.py:
random scale 0.5-2.0, pad, random 513x513 crop, flip; uint8 'image', int32 'label', 'box') on
the CamVid photos (train: 367 images, 360x480; VOC's are up to 500x500), read by path from
`--root` and built into a TFDS `folder` dataset in `--data_dir` once (later runs reuse it).
The folder builder stores images as PNG, VOC's stores its JPEG files as they are, and the two
decode at different costs: so the pipeline also runs on the same photos stored as their
original JPEG files (quality 95; a builder defined here, otherwise the folder's), and decoding
alone is timed on both (`--formats`).

Per core: tf.data runs in a private threadpool of N threads (`--threads`) with
max_intra_op_parallelism=1. The pipeline shuffles serialized records and decodes every image
of every epoch in its parallel map, as for VOC's train_aug: the first epoch is the warm-up,
and timing starts and ends at epoch boundaries (at least `--seconds`), or covers `--batches`
batches. The process's CPU seconds per image (pipeline and decode)
are a check that depends neither on N nor on CPU time other jobs take (wall time above CPU
time on one thread means they took some). Not measured: the host-to-device copy and the
training loop's own Python work.

Extrapolation, per `--hosts` entry (name:vCPUs:chips:peak bf16 TFLOP/s per chip):
- Pipeline: images/s per thread at the largest N x (vCPUs - `--reserved_vcpus`); also the
  vCPUs / CPU seconds per image. Linear, no contention, nothing else on the host: an upper
  bound. The stages that run on one thread (shuffle, batch, the numpy conversion in Python)
  do not scale with vCPUs. A thread here is a KVM vCPU of an Intel Xeon; TPU hosts have other
  CPUs, so their per-vCPU rate differs.
- Chips: DeepLabV3+ ResNet-101, output stride 16, 513x513 costs 168.82 GFLOPs per image to
  infer (README: XLA's cost analysis), a train step about 3x that; a chip trains
  MFU x peak / train FLOPs images/s, a host chips x that.
- Verdict: pipeline / chips, and the vCPUs the pipeline needs to feed the chips.
The host figures (looked up 2026-12): v4, 275 bf16 TFLOP/s per chip (cloud.google.com/tpu/docs/v4),
4 chips per VM (ct4p-hightpu-4t, e.g. AI-Hypercomputer/xpk's system characteristics: v4-8 is one
VM of 4 chips); v5e, 197 bf16 TFLOP/s per chip, 8 chips and 224 vCPUs per ct5lp-hightpu-8t VM
(docs.cloud.google.com/tpu/docs/v5e). The v4 VM's 240 vCPUs are not confirmed by the pages
searched: give your host's own figures with --hosts.
"""

import dataclasses
import os
import resource
import time

from absl import app
from absl import flags
from etils import epath
from ml_collections import config_flags
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax import runtime
from deeplab_jax.data import datasets
from deeplab_jax.data import input_pipeline
from deeplab_jax.data.datasets import folder
from deeplab_jax.data.datasets.features import segmentation_info

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', os.path.join(REPO_ROOT, 'configs', 'voc.py'),
                                'The recipe whose augmentation is measured.', lock_config=True)
flags.DEFINE_string('root', None, 'The CamVid folder (train/images, train/labels, ...); default '
                    '../shared/datasets/camvid from the repository root.')
flags.DEFINE_string('data_dir', '/tmp/deeplab_jax_input_pipeline_benchmark',
                    'Where the TFDS datasets are built (once) and read.')
flags.DEFINE_integer('num_classes', 11, 'Classes of the folder (CamVid: 11).')
flags.DEFINE_integer('ignore_value', 11, 'Label value of unlabelled pixels (CamVid: 11).')
flags.DEFINE_list('formats', ['png', 'jpeg'], 'How the images are stored: png (the folder '
                  'dataset), jpeg (the original files, as the VOC builder stores them).')
flags.DEFINE_list('threads', ['1', '2'], 'tf.data private threadpool sizes to measure.')
flags.DEFINE_integer('batch_size', 8, 'Images per batch (the per-image cost hardly depends on it).')
flags.DEFINE_float('seconds', 20.0, 'Least time measured per thread count (whole epochs).')
flags.DEFINE_integer('batches', None, 'Measure this many batches after the warm-up epoch instead.')
flags.DEFINE_integer('decode_passes', 3, 'Passes over the split when timing decode alone.')
flags.DEFINE_list('hosts', ['v4:240:4:275', 'v5e:224:8:197'],
                  'TPU hosts to extrapolate to, each name:vCPUs:chips:peak bf16 TFLOP/s per chip.')
flags.DEFINE_integer('reserved_vcpus', 0, 'vCPUs per host kept from the input pipeline.')
flags.DEFINE_float('mfu', 0.4, 'Assumed model FLOPs utilisation of the chips.')
flags.DEFINE_float('inference_gflops', 168.82, 'GFLOPs per 513x513 image, inference (README: '
                   'DeepLabV3+ ResNet-101, output stride 16, XLA cost analysis).')
flags.DEFINE_float('train_flops_factor', 3.0, 'Train-step FLOPs / inference FLOPs.')


class JpegSegmentationFolder(folder.SegmentationFolder):
  """The folder dataset with its JPEG images stored as the files are, as the VOC builder does."""

  # TFDS reads a builder's metadata files next to its module: the folder builder's, not ours.
  pkg_dir_path = epath.Path(folder.__file__).parent

  def _info(self) -> tfds.core.DatasetInfo:
    return segmentation_info(self, self.__doc__, 'jpeg')

  def _generate_examples(self, pairs):
    config = self.builder_config
    for stem, (image_path, label_path) in pairs.items():
      if not image_path.lower().endswith(('.jpg', '.jpeg')):
        raise ValueError(f'{image_path}: --formats=jpeg needs JPEG images')
      _, label = folder.read_example(image_path, label_path, config.num_classes,
                                     config.ignore_value)  # Checks the pair too.
      yield stem, {'image': image_path, 'segmentation_mask': label,
                   'file_name': os.path.relpath(image_path, config.root)}


def threading_options(threads: int) -> tf.data.Options:
  options = tf.data.Options()
  options.threading.private_threadpool_size = threads
  options.threading.max_intra_op_parallelism = 1
  return options


def cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def measure(config, info, builder, threads: int) -> dict[str, float]:
  """Images/s and CPU seconds per image of the train pipeline on `threads` tf.data threads."""
  epoch = builder.info.splits[config.train_split].num_examples
  ds = input_pipeline.create_train_dataset(config, info, builder, process_index=0,
                                           process_count=1)
  batches = input_pipeline.as_numpy(ds.with_options(threading_options(threads)))
  consumed = 0
  while consumed < epoch:  # Warm-up: the first epoch.
    consumed += len(next(batches)['image'])
  start, start_cpu, start_count = time.perf_counter(), cpu_seconds(), consumed
  if FLAGS.batches:
    for _ in range(FLAGS.batches):
      consumed += len(next(batches)['image'])
  else:  # Whole epochs.
    next_boundary = (consumed // epoch + 1) * epoch
    while True:
      consumed += len(next(batches)['image'])
      if consumed >= next_boundary:
        if time.perf_counter() - start >= FLAGS.seconds:
          break
        next_boundary += epoch
  seconds, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
  images = consumed - start_count
  return {'images': images, 'seconds': seconds, 'rate': images / seconds,
          'cpu_per_image': cpu / images}


def decode_milliseconds(encoded: list[bytes], decode) -> tuple[float, float]:
  """Wall and process CPU milliseconds per image of `decode` on one tf.data thread."""
  ds = tf.data.Dataset.from_tensor_slices(encoded).repeat(FLAGS.decode_passes)
  ds = ds.map(lambda data: tf.shape(decode(data, channels=3))[0]).batch(64)
  ds = ds.with_options(threading_options(1))
  for _ in ds.take(1):  # Warm-up.
    pass
  start, start_cpu, count = time.perf_counter(), cpu_seconds(), 0
  for heights in ds:
    count += len(heights)
  return ((time.perf_counter() - start) / count * 1e3,
          (cpu_seconds() - start_cpu) / count * 1e3)


def folder_config(config, root: str):
  """The recipe reading the CamVid folder (its augmentation unchanged)."""
  config.dataset = 'folder'
  config.folder.root = root
  config.folder.num_classes = FLAGS.num_classes
  config.folder.ignore_value = FLAGS.ignore_value
  config.model.num_classes = FLAGS.num_classes
  config.train_split = 'train'
  config.batch_size = FLAGS.batch_size
  return config


def parse_host(text: str) -> tuple[str, int, int, float]:
  name, vcpus, chips, peak = text.split(':')
  return name, int(vcpus), int(chips), float(peak)


def main(argv):
  del argv
  runtime.initialize()
  root = os.path.normpath(FLAGS.root or os.path.join(REPO_ROOT, '..', 'shared', 'datasets',
                                                     'camvid'))
  config = folder_config(FLAGS.config, root)
  info = datasets.get('folder', config.folder)
  thread_counts = sorted(int(n) for n in FLAGS.threads)
  builders = {}
  for image_format in FLAGS.formats:
    format_info = info if image_format == 'png' else dataclasses.replace(
        info, tfds_name='jpeg_segmentation_folder')
    builder = datasets.prepare_builder(format_info, FLAGS.data_dir)
    builders[image_format] = format_info, builder

  split = next(iter(builders.values()))[1].info.splits[config.train_split]
  print(f'data: {split.num_examples} images of {root} ({config.train_split!r}), built in '
        f'{FLAGS.data_dir}')
  print(f'recipe: crop {tuple(config.crop_size)}, scale {config.min_scale}-{config.max_scale}, '
        f'flip {config.flip}, shuffle buffer {config.shuffle_buffer_size}; batch '
        f'{config.batch_size}; uint8 image, int32 label, box; every epoch decodes')
  print(f'machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start '
        '(other jobs add noise)')

  # Decode alone, on the same photos: the bytes each dataset stores.
  decode_ms = {}
  for image_format, (_, builder) in builders.items():
    encoded = [ex['image'] for ex in tfds.as_numpy(builder.as_dataset(
        config.train_split, decoders={'image': tfds.decode.SkipDecoding()}))]
    decode = tf.io.decode_png if image_format == 'png' else tf.io.decode_jpeg
    decode_ms[image_format] = wall_ms, cpu_ms = decode_milliseconds(encoded, decode)
    print(f'decode only, 1 thread: {image_format.upper():4} {wall_ms:5.2f} ms/image (CPU '
          f'{cpu_ms:.2f} ms), {np.mean([len(e) for e in encoded]) / 1e3:.0f} kB/image stored')
  if {'png', 'jpeg'} <= decode_ms.keys():
    wall_saved, cpu_saved = np.subtract(decode_ms['png'], decode_ms['jpeg'])
    print(f'  JPEG instead of PNG: {wall_saved:+.2f} ms/image saved ({cpu_saved:+.2f} ms CPU); '
          'JPEG: the original CamVid files, quality 95; VOC stores its images as JPEG')

  print(f'\n{"stored as":>9} {"threads":>7} {"images/s":>9} {"per thread":>10} '
        f'{"CPU s/image":>11} {"measured":>18}')
  results = {}
  for image_format, (format_info, builder) in builders.items():
    for threads in thread_counts:
      result = measure(config, format_info, builder, threads)
      results[image_format, threads] = result
      print(f'{image_format:>9} {threads:>7} {result["rate"]:>9.1f} '
            f'{result["rate"] / threads:>10.1f} {result["cpu_per_image"]:>11.3f} '
            f'{result["images"]:>6} in {result["seconds"]:5.1f} s')

  threads = thread_counts[-1]
  train_gflops = FLAGS.inference_gflops * FLAGS.train_flops_factor
  print(f'\nchips: {FLAGS.inference_gflops:.2f} GFLOPs/image inference x '
        f'{FLAGS.train_flops_factor:g} = {train_gflops:.0f} GFLOPs per trained 513x513 image, '
        f'MFU {FLAGS.mfu:g}')
  print(f'pipeline: images/s per thread at {threads} thread(s) x (host vCPUs - '
        f'{FLAGS.reserved_vcpus}): linear scaling, no contention, an upper bound; (CPU time): '
        'the same vCPUs / CPU seconds per image, blind to CPU time other jobs take here')
  print(f'{"host":>6} {"vCPUs":>5} {"chips":>5} {"chips img/s":>11} {"stored as":>9} '
        f'{"pipeline img/s":>14} {"(CPU time)":>10} {"ratio":>6} {"vCPUs needed":>12}')
  verdict = []
  for name, vcpus, chips, peak_tflops in map(parse_host, FLAGS.hosts):
    consumed = chips * FLAGS.mfu * peak_tflops * 1e12 / (train_gflops * 1e9)
    for image_format in builders:
      result = results[image_format, threads]
      per_thread = result['rate'] / threads
      pipeline = per_thread * (vcpus - FLAGS.reserved_vcpus)
      by_cpu_time = (vcpus - FLAGS.reserved_vcpus) / result['cpu_per_image']
      ratio = pipeline / consumed
      print(f'{name:>6} {vcpus:>5} {chips:>5} {consumed:>11.0f} {image_format:>9} '
            f'{pipeline:>14.0f} {by_cpu_time:>10.0f} {ratio:>5.1f}x '
            f'{consumed / per_thread:>12.0f}')
      verdict.append(f'{name} {image_format.upper()} ' + (
          f'keeps up, {ratio:.1f}x' if ratio >= 1 else f'falls short by {1 / ratio:.1f}x'))
      if ratio < 1:
        print(f'        {name} {image_format}: short by {1 / ratio:.1f}x. Cheaper per image: '
              'JPEG rather than PNG storage; decode only the crop '
              '(tf.image.decode_and_crop_jpeg); images stored pre-resized; decoded images '
              'cached; random scale and crop on the device; fewer vCPUs left to other work '
              '(tf.data parallelism is already AUTOTUNE).')
  print(f'verdict (pipeline upper bound / chips at MFU {FLAGS.mfu:g}): ' + '; '.join(verdict))


if __name__ == '__main__':
  app.run(main)
