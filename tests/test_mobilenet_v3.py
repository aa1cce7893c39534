"""MobileNetV3 and LR-ASPP: feature strides at every output stride, torchvision's dilation rule,
torchvision's deeplabv3/lraspp_mobilenet_v3_large and ImageNet MobileNetV3s converted and run
side by side with them (random weights and BatchNorm statistics: logits and every backbone
feature must match), and the recipes built on them."""

import argparse
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import pytest
import torch
import torchvision
from torchvision.models import segmentation

from conftest import load_config
from deeplab_jax import checkpointing, experiment, pretrained
from deeplab_jax.convert import __main__ as convert_main
from deeplab_jax.convert import torchvision as tv_convert
from deeplab_jax.data import datasets
from deeplab_jax.models import BACKBONES, ConvBN, create_model
from deeplab_jax.models.layers import atrous_units
from deeplab_jax.models.mobilenet_v3 import UNITS
from test_convert_torchvision import (assert_close, assert_logits_agree, convert_via_file, count,
                                      nhwc, raw_and_normalised, restore_backbone_into_recipe,
                                      torchvision_model)

# The models compared with torchvision's run once: without LLVM's optimisations they compile in
# half the time, and compute the same to float rounding (1e-7 here).
jit_run_once = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})


@pytest.mark.parametrize('name,final_channels', [('mobilenetv3_large', 480),
                                                 ('mobilenetv3_small', 288)])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_feature_strides_and_width(name, final_channels, output_stride):
  spec = BACKBONES[name]
  module = spec.module(output_stride=output_stride, width=0.5, conv=ConvBN)
  features = jax.eval_shape(
      lambda: module.init_with_output(jax.random.key(0), jnp.zeros((1, 49, 83, 3)))[0])
  size = lambda stride: (-(-49 // stride), -(-83 // stride))
  assert features['stem'].shape[1:3] == size(2)
  assert features[spec.low_level].shape[1:3] == size(4)
  assert features[spec.auxiliary].shape[1:3] == size(8)
  assert features[spec.final].shape[1:] == (*size(output_stride), final_channels)  # 6 x 80, 6 x 48.


@pytest.mark.parametrize('variant', ['large', 'small'])
def test_atrous_units_follow_torchvisions_dilated_mobilenet_v3(variant):
  # dilated=True (output stride 16): the last stage at rate 2, the unit that gives up its stride
  # included; TF DeepLab's rule would keep that one at rate 1.
  layers = getattr(torchvision.models, f'mobilenet_v3_{variant}')(dilated=True).features[1:-1]
  depthwise = [next(m for m in layer.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1)
               for layer in layers]
  strides = [row[-1] for row in UNITS[variant]]
  ours = atrous_units(strides, 16, input_stride=2, keep_rate_in_first_unit=False)
  assert ours == [(conv.stride[0], conv.dilation[0]) for conv in depthwise]
  assert atrous_units(strides, 16, input_stride=2)[-3:] == [(1, 1), (1, 2), (1, 2)]


def torchvision_features(layers: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
  """Our MobileNetV3's features from torchvision's `features` or segmentation `backbone`."""
  children = list(layers.children())
  names = ['stem', *(f'unit{i}' for i in range(1, len(children) - 1)), 'final']
  features, x = {}, images
  with torch.no_grad():
    for name, layer in zip(names, children):
      x = features[name] = layer(x)
  return features


def apply_capturing_backbone(model, variables, pixels):
  """(output, the backbone's features, intermediates) of our model, under jit."""
  apply = functools.partial(model.apply, train=False, mutable=['intermediates'],
                            capture_intermediates=lambda module, _: module.name == 'backbone')
  out, state = jit_run_once(apply)(variables, pixels)
  (features,) = state['intermediates']['backbone']['__call__']
  return out, features, state['intermediates']


def assert_features_agree(ours, expected):
  assert set(ours) == set(expected)
  for name, value in expected.items():
    assert_close(ours[name], nhwc(value), name)


def test_deeplabv3_mobilenet_v3_large_matches_torchvision(tmp_path):
  arch = 'deeplabv3_mobilenet_v3_large'
  reference = torchvision_model(arch, aux_loss=True)
  model, variables = convert_via_file(reference, arch, tmp_path)
  published = segmentation.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
  assert count(variables['params']) == published.meta['num_params'] == 11_029_328

  pixels, images = raw_and_normalised(1, 61, 83, 3)  # Not a multiple of the output stride.
  with torch.no_grad():
    expected = reference(images)
  logits, features, intermediates = apply_capturing_backbone(model, variables, pixels)
  assert_logits_agree(logits, nhwc(expected['out']), 'logits')
  (aux_logits,) = intermediates['aux_logits']
  assert_logits_agree(aux_logits, nhwc(expected['aux']), 'aux logits')
  assert_features_agree(features, torchvision_features(reference.backbone, images))


def test_lraspp_mobilenet_v3_large_matches_torchvision(tmp_path):
  arch = 'lraspp_mobilenet_v3_large'
  reference = torchvision_model(arch)
  model, variables = convert_via_file(reference, arch, tmp_path)
  published = segmentation.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
  assert count(variables['params']) == published.meta['num_params'] == 3_221_538

  pixels, images = raw_and_normalised(1, 61, 83, 3)
  with torch.no_grad():
    expected = reference(images)['out']
  logits, features, _ = apply_capturing_backbone(model, variables, pixels)
  assert_logits_agree(logits, nhwc(expected), 'logits')
  assert_features_agree(features, torchvision_features(reference.backbone, images))


def test_imagenet_mobilenet_v3_small_matches_torchvision(tmp_path):
  reference = torchvision_model('mobilenet_v3_small')
  model, variables = convert_via_file(reference, 'mobilenet_v3_small', tmp_path)
  assert tv_convert.left_out(reference.state_dict(), 'mobilenet_v3_small') == [
      'classifier.0', 'classifier.3']
  assert count(variables['params']) == sum(p.numel() for p in reference.features.parameters())

  pixels, images = raw_and_normalised(1, 61, 83, 3)
  features = jit_run_once(functools.partial(model.apply, train=False))(variables, pixels)
  assert_features_agree(features, torchvision_features(reference.features, images))


def convert_with_the_command(arch: str, tmp_path: pathlib.Path) -> pathlib.Path:
  """The output directory of `python -m deeplab_jax.convert torchvision --arch arch` (called
  in-process) on a random torchvision `arch`."""
  torch.save(torchvision_model(arch).state_dict(), tmp_path / f'{arch}.pth')
  output = tmp_path / 'converted'
  convert_main.convert_torchvision(argparse.Namespace(
      arch=arch, input=str(tmp_path / f'{arch}.pth'), output=str(output), num_classes=None))
  return output


def test_imagenet_mobilenet_v3_large_converts_for_the_voc_recipe(tmp_path, capsys):
  output = convert_with_the_command('mobilenet_v3_large', tmp_path)
  assert ('Left out classifier.0, classifier.3: the ImageNet classifier'
          in capsys.readouterr().out)
  assert 'model' not in json.loads((output / 'model.json').read_text())

  # configs/voc_mobilenetv3.py restores its whole backbone from it.
  report = restore_backbone_into_recipe('voc_mobilenetv3', output)
  assert {path.split('/')[1] for path in report.left_at_init} == {
      'aspp', 'head', 'classifier', 'aux_head'}
  assert not report.unused and not report.fresh_classifier


def test_lraspp_weights_fine_tune_on_the_cityscapes_recipe(tmp_path):
  output = convert_with_the_command('lraspp_mobilenet_v3_large', tmp_path)
  model_config = json.loads((output / 'model.json').read_text())['model']
  assert (model_config['architecture'], model_config['lraspp_features']) == ('lraspp', 128)

  # 21 classes to 19: both of LR-ASPP's classifiers start afresh, everything else is restored.
  model = create_model(load_config('cityscapes_mobilenetv3').model)
  shapes = jax.eval_shape(functools.partial(
      model.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)), train=False))
  _, report = pretrained.merge(dict(shapes), checkpointing.load_variables(str(output)))
  assert {path.rsplit('/', 2)[1] for path in report.fresh_classifier} == {
      'classifier', 'low_classifier'}
  assert not report.left_at_init and not report.unused


@pytest.mark.parametrize('recipe,arch', [
    ('voc_mobilenetv3', 'deeplabv3_mobilenet_v3_large'),
    ('cityscapes_mobilenetv3', 'lraspp_mobilenet_v3_large')])
def test_recipe_builds_torchvisions_architecture(recipe, arch):
  config = load_config(recipe)
  experiment.check_config(config)
  assert config.model.num_classes == datasets.get(config.dataset).num_classes
  for size in (*config.crop_size, *config.eval_crop_size):
    assert size % config.model.output_stride == 1  # k * output stride + 1.
  # The model config of the converted torchvision model, which the tests above run: only the
  # BatchNorm momentum, a training setting, differs.
  reference = tv_convert.model_config(arch, config.model.num_classes,
                                      aux_head=config.model.aux_head_features > 0)
  assert {key for key in reference if config.model[key] != reference[key]} == {'bn_momentum'}

  model = create_model(config.model)
  images = jnp.zeros((2, 33, 47, 3), jnp.uint8)
  logits, _ = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), images, train=False))
  assert logits.shape == (2, 33, 47, config.model.num_classes)
