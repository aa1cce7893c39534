"""A few train steps on fixed global batches through the real sharding path: the same global
batches whatever the number of processes, each process handing its own rows to
`sharding.shard_batch`. test_multiprocess.py runs it as a job of two processes:

  python tests/fixed_batches.py --config=configs/shapes.py --output=losses.json \
      --cpu_devices=2 --coordinator_address=localhost:PORT --num_processes=2 --process_id=I
"""

import json

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np

from deeplab_jax import runtime
from deeplab_jax import sharding
from deeplab_jax import train_state
from deeplab_jax.models import create_model

FLAGS = flags.FLAGS


def global_batch(config, step: int) -> dict[str, np.ndarray]:
  """Batch `step` of a fixed sequence: raw images, labels with ignored pixels, crop boxes."""
  rng = np.random.default_rng(step)
  size, classes = tuple(config.crop_size), config.model.num_classes
  labels = rng.integers(0, classes, (config.batch_size, *size)).astype(np.int32)
  labels[rng.random(labels.shape) < 0.1] = config.ignore_label
  heights = rng.integers(size[0] // 2, size[0] + 1, config.batch_size)
  return {'image': rng.integers(0, 256, (config.batch_size, *size, 3), dtype=np.uint8),
          'label': labels,
          'box': np.stack([np.zeros_like(heights), np.zeros_like(heights), heights,
                           np.full_like(heights, size[1])], -1).astype(np.int32)}


def train_losses(config, steps: int) -> list[float]:
  """The losses of `steps` train steps on the fixed global batches, over all devices of all
  processes; each process feeds its own rows of each batch."""
  mesh = sharding.create_mesh()
  model = create_model(config.model)
  state = train_state.create_train_state(config, model, mesh, config.seed)
  step_fn = train_state.jit_train_step(train_state.make_train_step(config, model), mesh)
  rows = config.batch_size // jax.process_count()
  mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
  losses = []
  for step in range(steps):
    local = {key: value[mine] for key, value in global_batch(config, step).items()}
    state, metrics = step_fn(state, sharding.shard_batch(local, mesh))
    losses.append(float(metrics['loss']))
  return losses


def main(argv):
  del argv
  runtime.initialize(FLAGS.cpu_devices, coordinator_address=FLAGS.coordinator_address,
                     num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  losses = train_losses(FLAGS.config, FLAGS.steps)
  if jax.process_index() == 0:
    with open(FLAGS.output, 'w') as file:
      json.dump(losses, file)
  print('losses', losses)


def define_flags() -> None:
  """The program's flags; defined only when run as a program, not when a test imports it."""
  config_flags.DEFINE_config_file('config', None, 'A recipe file.', lock_config=True)
  flags.DEFINE_string('output', None, 'JSON file for the losses (process 0 writes it).')
  flags.DEFINE_integer('steps', 3, 'Train steps.')
  flags.DEFINE_integer('cpu_devices', None, 'JAX CPU devices of this process.')
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0.')
  flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
  flags.DEFINE_integer('process_id', None, 'This process.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
