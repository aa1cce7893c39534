"""Trains and evaluates a DeepLab model.

  python -m deeplab_jax.main --config=configs/shapes.py --workdir=/tmp/deeplab_shapes
  python -m deeplab_jax.main --config=configs/shapes.py --workdir=/tmp/deeplab_shapes --mode=eval

Any config field can be overridden, e.g. --config.num_train_steps=50. Running again with the
same workdir resumes from its latest checkpoint. On every worker of a Cloud TPU pod slice the
same command joins one job by itself; elsewhere --coordinator_address, --num_processes and
--process_id make several processes one job.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from deeplab_jax import checkpointing
from deeplab_jax import evaluate
from deeplab_jax import runtime
from deeplab_jax import train
from deeplab_jax import workdir_lock
from deeplab_jax.config_error import one_line_errors
from deeplab_jax.data import datasets

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard summaries.')
config_flags.DEFINE_config_file('config', None, 'A recipe file, e.g. configs/shapes.py.',
                                lock_config=True)
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'prepare'],
                  'train: train and evaluate periodically, resuming from the latest checkpoint; '
                  'eval: evaluate one checkpoint (--config.eval.checkpoint_step, default the '
                  'latest); prepare: prepare the dataset in --config.data_dir and stop.')
flags.DEFINE_integer('cpu_devices', None, 'JAX CPU devices to split the batch over when no '
                     'accelerator is present; default: as many as cores that divide the batch.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for a multi-process '
                    'job outside Cloud TPU (which needs none of these three flags).')
flags.DEFINE_integer('num_processes', None, 'Processes in the multi-process job.')
flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes - 1.')
flags.DEFINE_integer('heartbeat_timeout_seconds', runtime.HEARTBEAT_TIMEOUT_SECONDS,
                     'A process of the job silent this long is dead, and the others stop.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.mode == 'prepare':  # Touches no device, so one worker of a pod slice can run it.
    runtime.initialize(join=False)
  else:
    runtime.initialize(FLAGS.cpu_devices or runtime.default_cpu_devices(FLAGS.config),
                       coordinator_address=FLAGS.coordinator_address,
                       num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
                       heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
  if FLAGS.mode == 'train':
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  elif FLAGS.mode == 'eval':
    evaluate.evaluate_checkpoint(FLAGS.config, FLAGS.workdir)
  else:
    info, builder = datasets.prepare_dataset(FLAGS.config)
    print(f'Dataset {info.name!r} is ready in {builder.data_dir}: {dict(builder.info.splits)}')


if __name__ == '__main__':
  app.run(one_line_errors(main, datasets.DatasetUnavailableError, datasets.DataError,
                          train.TrainingDiverged, workdir_lock.WorkdirInUse,
                          checkpointing.CheckpointError))
