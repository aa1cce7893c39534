"""Train-step and inference throughput of a config's model on synthetic data.

  python benchmarks/throughput.py --config=configs/shapes.py --batch_size=16 --image_size=65 \
      --cpu_devices=2
  python benchmarks/throughput.py --config=configs/voc.py --config.model.backbone=resnet50 \
      --batch_size=2 --image_size=513 --steps=3

Prints compile times, images/s, peak host memory, XLA's FLOPs per image, the achieved FLOP/s
and, given the devices' peak (--peak_tflops, per device), the model FLOPs utilisation (MFU).
Imports no TensorFlow.
"""

import resource
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from deeplab_jax import runtime
from deeplab_jax import sharding
from deeplab_jax import train_state
from deeplab_jax.models import create_model
from deeplab_jax.models.cost import count_params

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A recipe file.', lock_config=True)
flags.DEFINE_integer('batch_size', 8, 'Global batch size.')
flags.DEFINE_string('image_size', '513', 'Image size: N or HxW.')
flags.DEFINE_integer('steps', 10, 'Timed steps (after one warm-up step).')
flags.DEFINE_integer('cpu_devices', None, 'JAX CPU devices to split the batch over when no '
                     'accelerator is present (default 1).')
flags.DEFINE_float('peak_tflops', None, 'Peak TFLOP/s of one device at the model dtype, for '
                   'the MFU (e.g. 989 for an H100/H200 in bfloat16, 67 in float32).')
flags.mark_flags_as_required(['config'])


def timed(fn, *args, steps):
  """Seconds per call of fn(*args) over `steps` calls after a warm-up call."""
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(steps):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def compiled(jitted, *args):
  start = time.perf_counter()
  executable = jitted.lower(*args).compile()
  # XLA's cost analysis counts one device's share of the partitioned program.
  flops = executable.cost_analysis().get('flops', 0.0) * jax.device_count()
  return executable, time.perf_counter() - start, flops


def main(argv):
  del argv
  runtime.initialize(FLAGS.cpu_devices, tensorflow=False)
  config = FLAGS.config
  height, _, width = FLAGS.image_size.partition('x')
  size = (int(height), int(width or height))
  batch_size = FLAGS.batch_size
  with config.unlocked():
    config.crop_size = size
  mesh = sharding.create_mesh()
  model = create_model(config.model)
  state = train_state.create_train_state(config, model, mesh, seed=0)
  rng = np.random.default_rng(0)
  batch = sharding.shard_batch({
      'image': rng.integers(0, 256, (batch_size, *size, 3), dtype=np.uint8),
      'label': rng.integers(0, config.model.num_classes, (batch_size, *size), dtype=np.int32),
      'box': np.tile(np.array([0, 0, *size], np.int32), (batch_size, 1)),
  }, mesh)
  num_params = count_params(state.params)

  train_step, train_compile, train_flops = compiled(
      train_state.jit_train_step(train_state.make_train_step(config, model), mesh), state, batch)
  # The step donates its state: thread it through the timed calls.
  holder = [state]

  def step(batch):
    holder[0], metrics = train_step(holder[0], batch)
    return metrics

  train_seconds = timed(step, batch, steps=FLAGS.steps)

  variables = holder[0].variables
  infer = jax.jit(lambda v, x: jnp.argmax(model.apply(v, x, train=False), -1))
  infer, infer_compile, infer_flops = compiled(infer, variables, batch['image'])
  infer_seconds = timed(infer, variables, batch['image'], steps=FLAGS.steps)

  print(f'model: {config.model.architecture} {config.model.backbone} '
        f'OS {config.model.output_stride} dtype {config.model.dtype}, {num_params:,} parameters')
  print(f'devices: {jax.device_count()} x {jax.devices()[0].device_kind}; '
        f'batch {batch_size}, image {size[0]}x{size[1]}')
  for name, seconds, compile_seconds, flops in (
      ('train step', train_seconds, train_compile, train_flops),
      ('inference', infer_seconds, infer_compile, infer_flops)):
    print(f'{name:>10}: {batch_size / seconds:8.2f} images/s ({seconds * 1e3:.1f} ms/batch), '
          f'compile {compile_seconds:.1f} s, {flops / batch_size / 1e9:.2f} GFLOP/image, '
          f'{flops / seconds / 1e9:.1f} GFLOP/s achieved' + (
              f', MFU {flops / seconds / (FLAGS.peak_tflops * 1e12 * jax.device_count()):.1%}'
              if FLAGS.peak_tflops else ''))
  peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  print(f'peak host memory: {peak_kib / 2**20:.2f} GiB; TensorFlow imported: '
        f'{"tensorflow" in sys.modules}')


if __name__ == '__main__':
  app.run(main)
