"""The dense CRF against Krähenbühl's C++ densecrf (pydensecrf), side by side on real photos.

  python benchmarks/crf.py
  python benchmarks/crf.py --photos=chelsea --iterations=5 --repeats=5

scikit-image's public-domain photos, with unaries from random logits at 1/8 resolution upsampled
(a network's blobs) and DeepLab v2's settings. Prints, per photo: seconds per image of each
(median of --repeats, the two taking turns, after a warm-up; ours compiled beforehand, its
compile time apart), the ratio, the share of pixels whose argmax agrees, and how many lattice
vertices per pixel the photo used (the fast path has room for --vertices_per_pixel).
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from skimage import data

from deeplab_jax import crf
from deeplab_jax import crf_reference

FLAGS = flags.FLAGS
flags.DEFINE_list('photos', ['chelsea', 'coffee', 'astronaut', 'rocket'], 'skimage.data photos.')
flags.DEFINE_integer('classes', 21, 'Number of classes.')
flags.DEFINE_integer('iterations', 10, 'Mean-field iterations.')
flags.DEFINE_float('vertices_per_pixel', crf.CRFParams.vertices_per_pixel,
                   'Bilateral lattice room of the fast path.')
flags.DEFINE_integer('repeats', 3, 'Timed runs after the warm-up.')


def interleaved_seconds(fns, repeats):
  """(each fn's result, its median seconds over `repeats` calls after a warm-up call), the fns
  taking turns, so that the machine's drift from minute to minute falls on all of them."""
  results = [fn() for fn in fns]
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, fn_times in zip(fns, times):
      start = time.perf_counter()
      fn()
      fn_times.append(time.perf_counter() - start)
  return results, [statistics.median(fn_times) for fn_times in times]


def main(argv):
  del argv
  params = crf.CRFParams(iterations=FLAGS.iterations,
                         vertices_per_pixel=FLAGS.vertices_per_pixel)
  run = jax.jit(lambda p, x: crf.dense_crf(p, x, params))
  print(f'{FLAGS.iterations} iterations, {FLAGS.classes} classes, on '
        f'{jax.devices()[0].device_kind}')
  for name in FLAGS.photos:
    image = getattr(data, name)()
    height, width, _ = image.shape
    probabilities = crf_reference.blob_probabilities(np.random.default_rng(0), height, width,
                                                     FLAGS.classes)
    start = time.perf_counter()
    compiled = run.lower(probabilities, image).compile()
    compile_seconds = time.perf_counter() - start
    (got, want), (ours, theirs) = interleaved_seconds(
        [lambda: jax.block_until_ready(compiled(probabilities, image)),
         lambda: crf_reference.densecrf(probabilities, image, params)], FLAGS.repeats)
    agree = np.mean(np.asarray(got).argmax(-1) == want.argmax(-1))
    features = crf.pixel_features(jnp.asarray(image), params.bilateral_spatial_std,
                                  params.bilateral_colour_std)
    used = int(jax.jit(crf.lattice_vertices)(features).count) / (height * width)
    print(f'{name} {height}x{width}: pydensecrf {theirs:.3f} s, deeplab_jax {ours:.3f} s '
          f'(compile {compile_seconds:.1f} s), ratio {theirs / ours:.2f}x, argmax agrees on '
          f'{agree:.4%}, {used:.3f} vertices/pixel')


if __name__ == '__main__':
  app.run(main)
