"""Evaluation images/s of a checkpoint over its whole validation split (compilation excluded).

  python benchmarks/eval_throughput.py --config=configs/shapes.py --workdir=/tmp/deeplab_shapes
  python benchmarks/eval_throughput.py --config=configs/shapes.py --workdir=/tmp/deeplab_shapes \
      --config.eval.scales="(0.5,0.75,1.0,1.25,1.5,1.75)" --config.eval.flip=True

Runs the split twice (the first pass compiles) and prints the second pass's images/s and mIoU.
"""

import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from deeplab_jax import checkpointing
from deeplab_jax import evaluate
from deeplab_jax import experiment
from deeplab_jax import metrics
from deeplab_jax import runtime

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'The recipe the checkpoint was trained with.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'The training workdir holding checkpoints/.')
flags.DEFINE_integer('cpu_devices', None, 'JAX CPU devices (default 1).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  runtime.initialize(FLAGS.cpu_devices)
  config = FLAGS.config
  info, builder, mesh = experiment.prepare(config)
  model, variables, step = checkpointing.restore_model(config, FLAGS.workdir, mesh)
  evaluator = evaluate.Evaluator(config, info, builder, model, mesh)
  num_images = builder.info.splits[config.eval_split].num_examples
  for attempt in ('compile', 'timed'):
    start = time.perf_counter()
    matrix, _, _ = evaluator.run(variables)
    seconds = time.perf_counter() - start
  summary = metrics.summarize(matrix, info.class_names)
  print(f'step {step}, {num_images} images of {config.eval_split!r}, scales '
        f'{tuple(config.eval.scales)}, flip {config.eval.flip}, {jax.device_count()} device(s): '
        f'{num_images / seconds:.1f} images/s ({attempt} pass {seconds:.2f} s), '
        f'mIoU {summary["mean_iou"]:.4f}')


if __name__ == '__main__':
  app.run(main)
