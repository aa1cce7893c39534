"""The dense CRF on the default device (an accelerator) against the same on the CPU.

  python benchmarks/crf_on_device.py --height=375 --width=500

A synthetic photo-like image (random colours blended bilinearly, plus noise) and unaries from
random logits at 1/8 resolution upsampled; DeepLab v2's settings. Prints the seconds per image
on each device (median of --repeats after a compiled warm-up), the largest difference of the
probabilities and the share of pixels whose argmax agrees. Needs no TensorFlow nor pydensecrf.
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax import crf
from deeplab_jax import crf_reference

FLAGS = flags.FLAGS
flags.DEFINE_integer('height', 375, 'Image height.')
flags.DEFINE_integer('width', 500, 'Image width.')
flags.DEFINE_integer('classes', 21, 'Number of classes.')
flags.DEFINE_integer('repeats', 3, 'Timed runs after the warm-up.')


def synthetic_inputs(height, width, num_classes, seed=0):
  rng = np.random.default_rng(seed)
  corners = jnp.asarray(rng.uniform(0, 255, (height // 32 + 2, width // 32 + 2, 3)), jnp.float32)
  image = jax.image.resize(corners, (height, width, 3), 'linear')
  image = np.clip(np.asarray(image) + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
  return crf_reference.blob_probabilities(rng, height, width, num_classes), image


def run_on(device, probabilities, image, repeats):
  """(probabilities after the CRF, median seconds) on `device`."""
  args = jax.device_put((probabilities, image), device)
  compiled = jax.jit(crf.dense_crf).lower(*args).compile()
  out = jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return np.asarray(out), statistics.median(times)


def main(argv):
  del argv
  probabilities, image = synthetic_inputs(FLAGS.height, FLAGS.width, FLAGS.classes)
  device, cpu = jax.devices()[0], jax.devices('cpu')[0]
  got, seconds = run_on(device, probabilities, image, FLAGS.repeats)
  want, cpu_seconds = run_on(cpu, probabilities, image, FLAGS.repeats)
  agree = np.mean(got.argmax(-1) == want.argmax(-1))
  print(f'CRF {FLAGS.height}x{FLAGS.width}x{FLAGS.classes}: {device.device_kind} {seconds:.3f} '
        f's/image, CPU {cpu_seconds:.3f} s/image; largest difference '
        f'{np.abs(got - want).max():.2e}, argmax agrees on {agree:.4%}')


if __name__ == '__main__':
  app.run(main)
