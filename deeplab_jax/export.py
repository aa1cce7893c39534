"""Exports a trained checkpoint for serving: a TF SavedModel (via jax2tf) or a `jax.export` file.

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

tflite: a LiteRT (TFLite) flatbuffer of the model alone, for phones and other devices: float32
[1, h, w, 3] RGB pixels in 0..255 at exactly `eval_crop_size` -> float32 [1, h, w, C] logits
(resize and pad on the device, take the argmax there). Converted by TensorFlow's LiteRT
converter from the jax2tf graph; an operation it cannot convert is named in the error.
"""

import functools
import posixpath
import re

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import tensorflow as tf

from deeplab_jax import checkpointing
from deeplab_jax.config_error import ConfigError, one_line_errors
from deeplab_jax import inference
from deeplab_jax import runtime
from deeplab_jax import sharding
from deeplab_jax.models import convolution

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


def export_savedmodel(config, model, variables, directory: str) -> None:
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  serve = jax2tf.convert(make_serving_fn(config, model, variables), with_gradient=False)
  height, width = config.eval_crop_size

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name='image')],
               autograph=False)
  def serving_default(image):
    size = tf.shape(image)[:2]
    fitted_size = fit_within(size, (height, width))
    fits = tf.reduce_all(fitted_size == size)
    pixels = tf.cond(fits, lambda: tf.cast(image, tf.float32),
                     lambda: tf.image.resize(image, fitted_size, antialias=True))
    padding = [[0, height - fitted_size[0]], [0, width - fitted_size[1]], [0, 0]]
    pixels = tf.pad(pixels, padding)
    _, probabilities = serve(tf.ensure_shape(pixels, [height, width, 3])[None],
                             fitted_size[None])
    probabilities = probabilities[0, :fitted_size[0], :fitted_size[1]]
    probabilities = tf.cond(fits, lambda: probabilities,
                            lambda: tf.image.resize(probabilities, size))
    return {'labels': tf.argmax(probabilities, axis=-1, output_type=tf.int32),
            'probabilities': probabilities}

  module = tf.Module()
  module.serving_default = serving_default
  tf.saved_model.save(module, directory, signatures={'serving_default': serving_default})


class ConversionError(ValueError):
  """The LiteRT converter cannot convert the model; the message names the operations."""


def unconvertible_ops(message: str) -> list[str]:
  """The operations a LiteRT converter error names."""
  return sorted(set(re.findall(r"'([\w.]+)' op is not", message) +
                    re.findall(r"failed to legalize operation '([\w.]+)'", message)))


def tflite_model(config, model, variables) -> bytes:
  """The LiteRT flatbuffer of `model` on one image of `config.eval_crop_size` (see above)."""
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  height, width = config.eval_crop_size
  logits_fn = lambda images: model.apply(variables, images, train=False)
  with convolution.xla_convolutions():  # The CPU matmul forms do not convert.
    serve = tf.function(jax2tf.convert(logits_fn, with_gradient=False), autograph=False,
                        input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32,
                                                       name='image')])
    concrete = serve.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf.Module())
  try:
    return converter.convert()
  except Exception as error:  # pylint: disable=broad-except
    ops = unconvertible_ops(str(error))
    raise ConversionError(f'LiteRT cannot convert {config.model.architecture} on '
                          f'{config.model.backbone}: {", ".join(ops) or error}') from error


def export_tflite(config, model, variables, path: str) -> None:
  write_file(path, tflite_model(config, model, variables))


EXPORTERS = {'savedmodel': export_savedmodel, 'stablehlo': export_stablehlo,
             'tflite': export_tflite}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
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
  EXPORTERS[FLAGS.format](FLAGS.config, model, variables, FLAGS.output)
  print(f'Wrote the {FLAGS.format} export to {FLAGS.output}')


def define_flags() -> None:
  """The command line's flags; defined only when run as a program, not on import."""
  config_flags.DEFINE_config_file('config', None, 'The recipe the checkpoint was trained with.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'The training workdir holding checkpoints/.')
  flags.DEFINE_enum('format', 'savedmodel', list(EXPORTERS), 'What to write.')
  flags.DEFINE_string('output', None, 'Directory (savedmodel) or file (stablehlo, tflite) to '
                      'write.')
  flags.mark_flags_as_required(['config', 'workdir', 'output'])


if __name__ == '__main__':
  define_flags()
  app.run(one_line_errors(main, checkpointing.CheckpointError, ConversionError))
