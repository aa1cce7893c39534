"""Trains and evaluates a DeepLab model.

  python -m deeplab_jax.main --config=configs/shapes.py --workdir=/tmp/deeplab_shapes
  python -m deeplab_jax.main --config=configs/shapes.py --workdir=/tmp/deeplab_shapes --mode=eval

Any config field can be overridden, e.g. --config.num_train_steps=50. Running again with the
same workdir resumes from its latest checkpoint.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from deeplab_jax import evaluate
from deeplab_jax import runtime
from deeplab_jax import train
from deeplab_jax.data import datasets

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard summaries.')
config_flags.DEFINE_config_file('config', None, 'A recipe file, e.g. configs/shapes.py.',
                                lock_config=True)
flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'train: train and evaluate periodically, '
                  'resuming from the latest checkpoint; eval: evaluate one checkpoint '
                  '(--config.eval.checkpoint_step, default the latest).')
flags.DEFINE_integer('cpu_devices', None, 'JAX CPU devices to split the batch over when no '
                     'accelerator is present; default: as many as cores that divide the batch.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  runtime.initialize(FLAGS.cpu_devices or runtime.default_cpu_devices(FLAGS.config))
  logging.info('JAX process %d of %d; local devices: %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    if FLAGS.mode == 'train':
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
      evaluate.evaluate_checkpoint(FLAGS.config, FLAGS.workdir)
  except (datasets.DatasetUnavailableError, datasets.DataError) as error:
    raise SystemExit(f'deeplab_jax: {error}') from None


if __name__ == '__main__':
  app.run(main)
