"""Exports a trained checkpoint for serving: a TF SavedModel (via jax2tf), a `jax.export` file,
or a LiteRT (TFLite) or ONNX model for devices.

  python -m deeplab_jax.export --config=configs/shapes.py --workdir=/tmp/deeplab_shapes \
      --format=savedmodel --output=/tmp/deeplab_savedmodel

savedmodel: the `serving_default` signature takes a uint8 RGB image [H, W, 3] of any size and
returns 'labels' (int32 [H, W]) and 'probabilities' (float32 [H, W, C]). The model is compiled
for `config.eval_crop_size`: an image that fits is padded (the padding reads as the mean pixel,
as in evaluation); a larger one is first resized down (aspect ratio kept, antialiased) to fit,
and its probabilities are resized back to H x W before the argmax, as the official DeepLab
export does.

stablehlo: a serialized `jax.export.Exported` of the same computation on one float32 image
[1, h, w, 3] of 0..255 RGB pixels, padded at the bottom and right to `eval_crop_size` (with any
value), and its int32 [1, 2] size before padding -> ([1, h, w] labels, [1, h, w, C]
probabilities); load it with `jax.export.deserialize`.

tflite and onnx: the model alone, for phones, browsers and other runtimes: float32 [N, h, w, 3]
RGB pixels in 0..255 at exactly `eval_crop_size` -> float32 [N, h, w, C] logits. Resize the
image to fit, pad it at the bottom and right with the model's mean pixel (`model.mean_rgb`) and
take the argmax on the device. LiteRT's N is 1; ONNX's is free (the spatial size is not: the
model's resizing matrices and atrous taps are built for it).
- tflite is converted by TensorFlow's LiteRT converter from the jax2tf graph. With
  `--quantize=int8` every operation is quantized to int8 after training, calibrated on
  `--representative_images` images spread over the training split, prepared that way; the input and
  output stay float32, so the same device code runs both models.
- onnx is converted by jax2onnx (`pip install -e '.[onnx]'`).
An operation a converter cannot convert is named in the error.
"""

from collections.abc import Iterator
import contextlib
import functools
import io
import logging as python_logging
import posixpath
import re

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import tensorflow as tf

from deeplab_jax import checkpointing
from deeplab_jax.config_error import ConfigError, one_line_errors
from deeplab_jax import inference
from deeplab_jax import runtime
from deeplab_jax import sharding
from deeplab_jax.data import datasets
from deeplab_jax.models import portable

FLAGS = flags.FLAGS


def make_serving_fn(config, model, variables):
  """f(float32 [B, h, w, 3] pixels in 0..255, int32 [B, 2] sizes before padding) -> (int32
  labels, float32 probabilities): `inference.make_predict_fn`'s with `variables` inside."""
  return functools.partial(inference.make_predict_fn(model, config), variables)


def export_stablehlo(config, model, variables, path: str) -> None:
  serve = make_serving_fn(config, model, variables)
  exported = jax.export.export(jax.jit(serve))(
      jax.ShapeDtypeStruct((1, *config.eval_crop_size, 3), jnp.float32),
      jax.ShapeDtypeStruct((1, 2), jnp.int32))
  write_file(path, exported.serialize())


def write_file(path: str, content: bytes) -> None:
  """`content` at `path` (may be gs://), its folder made if need be."""
  if posixpath.dirname(path):
    tf.io.gfile.makedirs(posixpath.dirname(path))
  with tf.io.gfile.GFile(path, 'wb') as file:
    file.write(content)


def fit_within(size: tf.Tensor, limit: tuple[int, int]) -> tf.Tensor:
  """`size` (int32 [2]) scaled down, aspect ratio kept, to fit in `limit`; unchanged if it fits."""
  limit = tf.constant(limit, tf.int32)
  scale = tf.reduce_min(tf.cast(limit, tf.float32) / tf.cast(size, tf.float32))
  scaled = tf.cast(tf.round(tf.cast(size, tf.float32) * tf.minimum(scale, 1.0)), tf.int32)
  return tf.clip_by_value(scaled, 1, limit)


def fit_and_pad(image: tf.Tensor, frame: tuple[int, int], fill=0.0) -> tuple[tf.Tensor, tf.Tensor]:
  """(float32 [h, w, 3]: `image` resized down to fit `frame` if it does not (aspect ratio kept,
  antialiased) and padded at the bottom and right with `fill`, its int32 [2] size before
  padding): what the exports' models take."""
  size = tf.shape(image)[:2]
  fitted_size = fit_within(size, frame)
  pixels = tf.cond(tf.reduce_all(fitted_size == size), lambda: tf.cast(image, tf.float32),
                   lambda: tf.image.resize(image, fitted_size, antialias=True))
  padding = [[0, frame[0] - fitted_size[0]], [0, frame[1] - fitted_size[1]], [0, 0]]
  return tf.ensure_shape(tf.pad(pixels - fill, padding) + fill, [*frame, 3]), fitted_size


def export_savedmodel(config, model, variables, directory: str) -> None:
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  serve = jax2tf.convert(make_serving_fn(config, model, variables), with_gradient=False)
  height, width = config.eval_crop_size

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name='image')],
               autograph=False)
  def serving_default(image):
    size = tf.shape(image)[:2]
    pixels, fitted_size = fit_and_pad(image, (height, width))
    fits = tf.reduce_all(fitted_size == size)
    _, probabilities = serve(pixels[None], fitted_size[None])
    probabilities = probabilities[0, :fitted_size[0], :fitted_size[1]]
    probabilities = tf.cond(fits, lambda: probabilities,
                            lambda: tf.image.resize(probabilities, size))
    return {'labels': tf.argmax(probabilities, axis=-1, output_type=tf.int32),
            'probabilities': probabilities}

  module = tf.Module()
  module.serving_default = serving_default
  tf.saved_model.save(module, directory, signatures={'serving_default': serving_default})


class ConversionError(ValueError):
  """A converter (LiteRT's, ONNX's) cannot convert the model; the message names the operations."""


def unconvertible_ops(message: str) -> list[str]:
  """The operations a LiteRT converter error names."""
  return sorted(set(re.findall(r"'([\w.]+)' op is not", message) +
                    re.findall(r"failed to legalize operation '([\w.]+)'", message)))


@contextlib.contextmanager
def naming_unconvertible_ops(converter: str, config):
  try:
    yield
  except Exception as error:  # pylint: disable=broad-except
    ops = unconvertible_ops(str(error))
    raise ConversionError(f'{converter} cannot convert {config.model.architecture} on '
                          f'{config.model.backbone}: {", ".join(ops) or error}') from error


def representative_images(config, mean_rgb, count: int) -> Iterator[np.ndarray]:
  """float32 [1, h, w, 3]: `count` images spread evenly over the training split (every k-th),
  as the LiteRT model takes them: fitted into `eval_crop_size` (aspect ratio kept) and padded
  with `mean_rgb`."""
  info, builder = datasets.prepare_dataset(config, (config.train_split,))
  frame = tuple(config.eval_crop_size)
  prepare = lambda example: fit_and_pad(example[info.image_key], frame, mean_rgb)[0][None]
  every = max(1, builder.info.splits[config.train_split].num_examples // count)
  images = builder.as_dataset(config.train_split, shuffle_files=False)
  images = images.shard(every, 0).take(count).map(prepare)
  yield from images.as_numpy_iterator()


def tflite_model(config, model, variables, representative: Iterator[np.ndarray] | None = None
                 ) -> bytes:
  """The LiteRT flatbuffer of `model` on one image of `config.eval_crop_size` (see above);
  quantized to int8, calibrated on the `representative` images, if they are given."""
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  height, width = config.eval_crop_size
  logits_fn = lambda images: model.apply(variables, images, train=False)
  with portable.forms():
    serve = tf.function(jax2tf.convert(logits_fn, with_gradient=False), autograph=False,
                        input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32,
                                                       name='image')])
    concrete = serve.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf.Module())
  if representative is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image] for image in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  with naming_unconvertible_ops('LiteRT', config):
    return converter.convert()


def export_tflite(config, model, variables, path: str, quantize: str | None = None,
                  representative_count: int = 100) -> None:
  representative = None
  if quantize == 'int8':
    representative = representative_images(config, model.normalization.mean_rgb,
                                           representative_count)
  write_file(path, tflite_model(config, model, variables, representative))


def onnx_model(config, model, variables) -> bytes:
  """The ONNX model of `model` on a batch of images of `config.eval_crop_size` (see above)."""
  # jax2onnx 0.13.0 logs a traceback for each of its dm_pix plugins (made for an older JAX).
  python_logging.getLogger('jax2onnx.plugins.plugin_system').setLevel(python_logging.ERROR)
  import jax2onnx  # pylint: disable=g-import-not-at-top
  height, width = config.eval_crop_size
  logits_fn = lambda images: model.apply(variables, images, train=False)
  # jax2onnx prints a line per convolution.
  with portable.forms(), contextlib.redirect_stdout(io.StringIO()), \
       naming_unconvertible_ops('ONNX', config):
    return jax2onnx.to_onnx(logits_fn, [('batch', height, width, 3)], input_names=['image'],
                            output_names=['logits']).SerializeToString()


def export_onnx(config, model, variables, path: str) -> None:
  write_file(path, onnx_model(config, model, variables))


EXPORTERS = {'savedmodel': export_savedmodel, 'stablehlo': export_stablehlo,
             'tflite': export_tflite, 'onnx': export_onnx}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.quantize and FLAGS.format != 'tflite':
    raise app.UsageError(f'--quantize applies to --format=tflite, not {FLAGS.format}')
  if FLAGS.config.eval_crop_size is None:
    raise ConfigError('eval_crop_size', None, 'the export is compiled for one input size: name '
                      'it', (513, 513))
  runtime.initialize()
  model, variables, step = checkpointing.restore_model(FLAGS.config, FLAGS.workdir,
                                                       sharding.create_mesh())
  logging.info('Exporting the checkpoint of step %d', step)
  variables = jax.device_get(variables)
  if jax.process_index() > 0:  # One process of a multi-process job writes the export.
    return
  options = {}
  if FLAGS.quantize:
    options = {'quantize': FLAGS.quantize, 'representative_count': FLAGS.representative_images}
  EXPORTERS[FLAGS.format](FLAGS.config, model, variables, FLAGS.output, **options)
  print(f'Wrote the {FLAGS.format} export to {FLAGS.output}')


def define_flags() -> None:
  """The command line's flags; defined only when run as a program, not on import."""
  config_flags.DEFINE_config_file('config', None, 'The recipe the checkpoint was trained with.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'The training workdir holding checkpoints/.')
  flags.DEFINE_enum('format', 'savedmodel', list(EXPORTERS), 'What to write.')
  flags.DEFINE_string('output', None, 'Directory (savedmodel) or file (stablehlo, tflite, onnx) '
                      'to write.')
  flags.DEFINE_enum('quantize', None, ['int8'], 'tflite: quantize every operation to int8.')
  flags.DEFINE_integer('representative_images', 100, 'How many training images calibrate '
                       '--quantize=int8.')
  flags.mark_flags_as_required(['config', 'workdir', 'output'])


if __name__ == '__main__':
  define_flags()
  app.run(one_line_errors(main, checkpointing.CheckpointError, ConversionError,
                          datasets.DatasetUnavailableError, datasets.DataError))
