"""Milliseconds per image of the dense CRF on random probabilities and a random smooth image.

  python benchmarks/crf.py --size=513 --classes=21 --iterations=10
  python benchmarks/crf.py --size=513 --vertices_per_pixel=1 --batch=4

Prints the compile time, the mean time of --repeats runs after a warm-up (each waited on with
block_until_ready), the size of one copy of the lattice's values, XLA's temporary memory, and
how many lattice vertices per pixel the image used (what --vertices_per_pixel must cover). The
image blends random colours bilinearly and adds noise, so neighbouring pixels look alike, as in
photos.
"""

import math
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from deeplab_jax import crf

FLAGS = flags.FLAGS
flags.DEFINE_integer('size', 513, 'Image height and width.')
flags.DEFINE_integer('classes', 21, 'Number of classes.')
flags.DEFINE_integer('iterations', 10, 'Mean-field iterations.')
flags.DEFINE_integer('batch', 1, 'Images per call (dense_crf_batch when above 1).')
flags.DEFINE_float('vertices_per_pixel', 6.0, 'Bilateral lattice capacity per pixel.')
flags.DEFINE_integer('repeats', 3, 'Timed runs after the warm-up.')


def main(argv):
  del argv
  params = crf.CRFParams(iterations=FLAGS.iterations, vertices_per_pixel=FLAGS.vertices_per_pixel)
  shape = (FLAGS.batch, FLAGS.size, FLAGS.size)
  image_key, logits_key = jax.random.split(jax.random.key(0))
  colour_key, noise_key = jax.random.split(image_key)
  colours = jax.random.uniform(colour_key, (FLAGS.batch, 8, 8, 3), maxval=255)
  images = jax.image.resize(colours, shape + (3,), 'linear')
  images = jnp.clip(images + 4 * jax.random.normal(noise_key, images.shape), 0, 255)
  images = images.astype(jnp.uint8)
  probabilities = jax.nn.softmax(jax.random.normal(logits_key, shape + (FLAGS.classes,)), -1)
  if FLAGS.batch == 1:
    run = jax.jit(lambda p, x: crf.dense_crf(p[0], x[0], params)[None])
  else:
    run = jax.jit(lambda p, x: crf.dense_crf_batch(p, x, params))
  start = time.perf_counter()
  compiled = run.lower(probabilities, images).compile()
  compile_seconds = time.perf_counter() - start
  jax.block_until_ready(compiled(probabilities, images))  # Warm-up.
  start = time.perf_counter()
  for _ in range(FLAGS.repeats):
    jax.block_until_ready(compiled(probabilities, images))
  per_image = (time.perf_counter() - start) / FLAGS.repeats / FLAGS.batch
  memory = compiled.memory_analysis()
  temporaries = f'{memory.temp_size_in_bytes / 2 ** 30:.2f} GiB' if memory else 'unknown'
  features = crf.bilateral_features(images[0], params.bilateral_spatial_std,
                                    params.bilateral_colour_std)
  room = math.ceil(params.vertices_per_pixel * FLAGS.size ** 2)
  capacity = jax.eval_shape(lambda f: crf.build_lattice(f, room), features).neighbours.shape[-1]
  lattice_mib = capacity * FLAGS.classes * 4 / 2 ** 20
  used = int(jax.jit(crf.build_lattice)(features).vertices.max()) + 1
  print(f'{FLAGS.size}x{FLAGS.size}x{FLAGS.classes}, {FLAGS.iterations} iterations, batch '
        f'{FLAGS.batch}, {params.vertices_per_pixel} vertices/pixel, on '
        f'{jax.devices()[0].device_kind}: compile {compile_seconds:.1f} s, '
        f'{per_image * 1e3:.0f} ms/image; lattice values {lattice_mib:.0f} MiB a copy, '
        f'temporaries {temporaries}; the image used {used / FLAGS.size ** 2:.3f} vertices/pixel')


if __name__ == '__main__':
  app.run(main)
