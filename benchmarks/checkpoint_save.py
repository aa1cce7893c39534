"""How long saving a recipe's train state blocks training, the first save (which compiles what
it needs) and the next ones, with small replicated arrays written whole
(`checkpointing.MIN_SLICE_BYTES`) or every array split among its replicas as Orbax does by
default (--min_slice_bytes=0).

  python benchmarks/checkpoint_save.py --config=configs/camvid.py --cpu_devices=2
  python benchmarks/checkpoint_save.py --config=configs/camvid.py --cpu_devices=2 \
      --min_slice_bytes=0

Run each setting in its own process: the slices' programs compile once per process.
"""

import tempfile
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from deeplab_jax import checkpointing
from deeplab_jax import runtime
from deeplab_jax import sharding
from deeplab_jax import train_state
from deeplab_jax.models import create_model

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A recipe file.', lock_config=True)
flags.DEFINE_integer('min_slice_bytes', checkpointing.MIN_SLICE_BYTES,
                     'Arrays whose slice per replica would be smaller are written whole.')
flags.DEFINE_integer('saves', 3, 'Saves to time.')
flags.DEFINE_integer('cpu_devices', None, 'JAX CPU devices the state is replicated over when no '
                     'accelerator is present (default 1).')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  runtime.initialize(FLAGS.cpu_devices, tensorflow=False)
  checkpointing.set_min_slice_bytes(FLAGS.min_slice_bytes)
  config = FLAGS.config
  state = train_state.create_train_state(config, create_model(config.model),
                                         sharding.create_mesh(), seed=0)
  leaves = jax.tree.leaves(state)
  print(f'{len(leaves)} arrays, {sum(leaf.nbytes for leaf in leaves) / 2**20:.1f} MiB, '
        f'replicated over {jax.device_count()} devices; min_slice_bytes {FLAGS.min_slice_bytes}')
  manager = checkpointing.create_manager(tempfile.mkdtemp(), FLAGS.saves)
  for step in range(1, FLAGS.saves + 1):
    start = time.perf_counter()
    checkpointing.save(manager, step, state)
    blocking = time.perf_counter() - start
    checkpointing.wait_until_saved(manager)
    print(f'save {step}: training blocked {blocking:.2f} s, written after '
          f'{time.perf_counter() - start:.2f} s')


if __name__ == '__main__':
  app.run(main)
