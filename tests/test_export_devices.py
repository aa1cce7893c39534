"""Exports for devices give the JAX model's logits: LiteRT (TFLite) models run by
`ai-edge-litert`'s interpreter, float and int8, and ONNX models run by onnxruntime."""

import contextlib
import functools

from ai_edge_litert.interpreter import Interpreter
import jax
import numpy as np
import onnxruntime
import pytest

from conftest import load_config
from conftest import tiny_shapes_config
from deeplab_jax import checkpointing
from deeplab_jax import export
from deeplab_jax import sharding
from deeplab_jax import train
from deeplab_jax.models import portable
from deeplab_jax.models import create_model

# jax2onnx 0.13 uses jax.core.DropVar; each ONNX export may be the first to provoke it.
pytestmark = pytest.mark.filterwarnings('ignore:jax.core.DropVar is deprecated')


def run_tflite(flatbuffer: bytes, pixels: np.ndarray) -> np.ndarray:
  """The logits of each image of `pixels` ([N, h, w, 3]), one invocation per image."""
  interpreter = Interpreter(model_content=flatbuffer)
  interpreter.allocate_tensors()
  [image], [logits] = interpreter.get_input_details(), interpreter.get_output_details()
  assert tuple(image['shape']) == (1, *pixels.shape[1:]) and image['dtype'] == np.float32
  outputs = []
  for one in pixels:
    interpreter.set_tensor(image['index'], one[None])
    interpreter.invoke()
    outputs.append(interpreter.get_tensor(logits['index']))
  return np.concatenate(outputs)


def run_onnx(model: bytes, pixels: np.ndarray) -> np.ndarray:
  session = onnxruntime.InferenceSession(model, providers=['CPUExecutionProvider'])
  [logits] = session.run(['logits'], {'image': pixels})
  return logits


def random_variables(model, size, seed=0):
  """Random variables of the model's shapes (nothing compiled): logits far from zero, and
  BatchNorm variances in [0.5, 1.5]."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, size, size, 3),
                                                                         np.float32),
                                             train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if jax.tree_util.keystr(path[-1:]) == "['var']":
      return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
    return (0.1 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def jax_logits(model, variables, images) -> np.ndarray:
  """The JAX model's logits, jitted (op by op, MobileNetV2 takes 8 s more)."""
  return np.asarray(jax.jit(functools.partial(model.apply, train=False))(variables, images))


def pixels(size, seed=3, count=1):
  return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


def tiny_recipe(name: str, size: int, **model):
  config = load_config(name)
  config.eval_crop_size = (size, size)
  config.model.update(model)
  return config


# MobileNetV2 DeepLabV3, and ResNet DeepLabV3 and V3+ (at a small width: the same layers).
RECIPES = {
    'mobilenetv2_deeplabv3': ('voc_mobilenetv2', {'width': 0.35}),
    'resnet_deeplabv3': ('voc', {'architecture': 'deeplabv3', 'backbone': 'resnet18',
                                 'width': 0.125, 'multi_grid': (1, 2), 'aspp_features': 16}),
    'resnet_deeplabv3plus': ('voc', {'backbone': 'resnet18', 'width': 0.125,
                                     'multi_grid': (1, 2), 'aspp_features': 16,
                                     'decoder_features': 16, 'low_level_features': 8}),
}


def tiny_model(recipe: str):
  """(config, model, random variables) of RECIPES[recipe] at 65x65."""
  name, model_config = RECIPES[recipe]
  config = tiny_recipe(name, 65, **model_config)
  model = create_model(config.model)
  return config, model, random_variables(model, 65)


@pytest.mark.parametrize('recipe', RECIPES)
def test_litert_logits_equal_the_models(recipe):
  config, model, variables = tiny_model(recipe)
  image = pixels(65)
  want = jax_logits(model, variables, image)
  got = run_tflite(export.tflite_model(config, model, variables), image)
  assert got.shape == want.shape == (1, 65, 65, 21)
  assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
  assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.999


@pytest.mark.parametrize('export_fn, run', [(export.export_tflite, run_tflite),
                                             (export.export_onnx, run_onnx)])
def test_export_of_a_checkpoint(tiny_checkpoint, tmp_path, export_fn, run):
  config, workdir = tiny_checkpoint
  model, variables, _ = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  variables = jax.device_get(variables)
  export_fn(config, model, variables, str(tmp_path / 'shapes'))
  images = pixels(65, count=2)  # The recipe's eval_crop_size.
  got = run((tmp_path / 'shapes').read_bytes(), images)
  want = jax_logits(model, variables, images)
  np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_an_op_litert_cannot_convert_is_named(monkeypatch):
  """The CPU form of a large atrous convolution (per-tap matmuls added with scatter-adds),
  which the export keeps out with `portable.forms`, does not convert: the error says so."""
  monkeypatch.setattr(portable, 'forms', contextlib.nullcontext)
  config = tiny_recipe('voc_v2_resnet101', 129, backbone='resnet18', width=0.25,
                       multi_grid=(1, 2))
  model = create_model(config.model)
  with pytest.raises(export.ConversionError,
                     match=r"LiteRT cannot convert deeplabv2 on resnet18: vhlo\.map_v1"):
    export.tflite_model(config, model, random_variables(model, 129))


@pytest.mark.parametrize('recipe', RECIPES)
def test_onnx_logits_equal_the_models_at_any_batch_size(recipe):
  config, model, variables = tiny_model(recipe)
  onnx_model = export.onnx_model(config, model, variables)
  for count in (1, 3):
    images = pixels(65, count=count)
    want = jax_logits(model, variables, images)
    got = run_onnx(onnx_model, images)
    assert got.shape == want.shape == (count, 65, 65, 21)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.fixture(scope='module')
def trained_shapes(shapes_dir, tmp_path_factory):
  """(config, workdir) of the tiny shapes model trained for 300 steps: confident enough that
  quantization, not a coin toss between near-equal logits, decides any disagreement."""
  config = tiny_shapes_config(shapes_dir)
  config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 300
  config.log_every_steps = 100
  workdir = str(tmp_path_factory.mktemp('trained_shapes'))
  train.train_and_evaluate(config, workdir)
  return config, workdir


def test_int8_litert_agrees_with_the_float_model(trained_shapes, tmp_path):
  config, workdir = trained_shapes
  model, variables, step = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  assert step == 300
  variables = jax.device_get(variables)
  path = tmp_path / 'shapes_int8.tflite'
  export.export_tflite(config, model, variables, str(path), quantize='int8',
                       representative_count=32)
  int8_model = path.read_bytes()

  interpreter = Interpreter(model_content=int8_model)
  [image], [logits] = interpreter.get_input_details(), interpreter.get_output_details()
  floats = {tensor['index'] for tensor in interpreter.get_tensor_details()
            if tensor['dtype'] == np.float32}
  assert floats == {image['index'], logits['index']}  # Everything between them is integer.
  assert len(int8_model) < 0.5 * len(export.tflite_model(config, model, variables))

  validation = config.copy_and_resolve_references()
  validation.train_split = 'validation'  # Images the calibration has not seen.
  images = np.concatenate(list(export.representative_images(
      validation, model.normalization.mean_rgb, 16)))
  assert images.shape == (16, 65, 65, 3)
  want = jax_logits(model, variables, images).argmax(-1)
  got = run_tflite(int8_model, images).argmax(-1)
  assert (got == want).mean() >= 0.95

