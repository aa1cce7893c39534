"""torchvision models with random weights, saved as .pth, converted, and run side by side: our
logits and backbone features must match torchvision's, and so must the parameter counts. Ours
take raw pixels and normalise them; torchvision's take them normalised with ImageNet's
statistics, as its transforms give them."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import torchvision

from deeplab_jax import checkpointing
from deeplab_jax import pretrained
from deeplab_jax.convert import __main__ as convert_main
from deeplab_jax.convert import torchvision as tv_convert
from deeplab_jax.models import create_model
from deeplab_jax.models.normalization import IMAGENET
from deeplab_jax.models.resnet import atrous_schedule
from conftest import load_config


def randomize_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
  """Random BatchNorm statistics and affine parameters, so eval mode is not the identity."""
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        shape = module.running_mean.shape
        module.running_mean.copy_(0.2 * torch.randn(shape, generator=generator))
        module.running_var.copy_(0.5 + 1.5 * torch.rand(shape, generator=generator))
        module.weight.copy_(0.5 + torch.rand(shape, generator=generator))
        module.bias.copy_(0.2 * torch.randn(shape, generator=generator))
  return model.eval()


def torchvision_model(arch: str, aux_loss: bool = False) -> torch.nn.Module:
  torch.manual_seed(0)
  if arch in tv_convert.SEGMENTATION:
    model = getattr(torchvision.models.segmentation, arch)(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=aux_loss)
  else:
    model = getattr(torchvision.models, arch)(weights=None)
  if arch.startswith('vgg'):  # Its conv biases start at 0; random ones check their conversion.
    with torch.no_grad():
      for module in model.features:
        if isinstance(module, torch.nn.Conv2d):
          module.bias.normal_(0, 0.1)
  return randomize_batch_norm(model)


def convert_via_file(model: torch.nn.Module, arch: str, tmp_path):
  """Saves the state dict as a .pth and converts what the CLI's loader reads back."""
  path = tmp_path / f'{arch}.pth'
  torch.save(model.state_dict(), path)
  return tv_convert.convert(convert_main.load_torch_state_dict(str(path)), arch)


def nhwc(tensor: torch.Tensor) -> np.ndarray:
  return tensor.detach().numpy().transpose(0, 2, 3, 1)


def raw_and_normalised(*shape: int, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
  """Random uint8 NHWC pixels for ours, and the NCHW tensor torchvision's transforms make."""
  pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
  mean, std = (torch.tensor(v).reshape(1, 3, 1, 1) for v in (IMAGENET.mean_rgb, IMAGENET.std_rgb))
  images = torch.from_numpy(pixels.transpose(0, 3, 1, 2).astype(np.float32))
  return pixels, (images - mean) / std


def assert_close(ours, reference, name):
  ours, reference = np.asarray(ours), np.asarray(reference)
  assert ours.shape == reference.shape, name
  error, scale = np.abs(ours - reference).max(), np.abs(reference).max()
  assert error <= 1e-4 * scale, f'{name}: max |difference| {error} vs max |value| {scale}'


def assert_logits_agree(ours, reference, name):
  assert_close(ours, reference, name)
  agreement = np.mean(np.argmax(ours, -1) == np.argmax(reference, -1))
  assert agreement >= 0.999, f'{name}: argmax agrees on {agreement:.4%} of pixels'


def count(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize('arch,aux_loss', [('deeplabv3_resnet50', False),
                                           ('deeplabv3_resnet101', True)])
def test_deeplabv3_matches_torchvision(arch, aux_loss, tmp_path):
  reference = torchvision_model(arch, aux_loss)
  model, variables = convert_via_file(reference, arch, tmp_path)
  assert count(variables['params']) == sum(p.numel() for p in reference.parameters())

  pixels, images = raw_and_normalised(2, 61, 83, 3)  # Not a multiple of the output stride.
  with torch.no_grad():
    expected = reference(images)
  expected_features = torchvision_resnet_features(reference.backbone, images)
  logits, state = model.apply(
      variables, pixels, train=False, mutable=['intermediates'],
      capture_intermediates=lambda module, _: module.name == 'backbone')
  assert_logits_agree(logits, nhwc(expected['out']), 'logits')
  (features,) = state['intermediates']['backbone']['__call__']
  assert set(features) == set(expected_features)
  for name, value in expected_features.items():
    assert_close(features[name], nhwc(value), name)
  if aux_loss:
    (aux_logits,) = state['intermediates']['aux_logits']
    assert_logits_agree(aux_logits, nhwc(expected['aux']), 'aux logits')
  else:
    assert 'aux_logits' not in state['intermediates']


def torchvision_resnet_features(resnet, images) -> dict[str, torch.Tensor]:
  """The features our ResNet returns, from torchvision's ResNet (or segmentation backbone)."""
  with torch.no_grad():
    x = resnet.relu(resnet.bn1(resnet.conv1(images)))
    features = {'stem': x}
    x = resnet.maxpool(x)
    for index in range(1, 5):
      x = features[f'stage{index}'] = getattr(resnet, f'layer{index}')(x)
  return features


@pytest.mark.parametrize('arch', ['resnet18', 'resnet50', 'resnet101'])
def test_resnet_matches_torchvision(arch, tmp_path):
  reference = torchvision_model(arch)
  model, variables = convert_via_file(reference, arch, tmp_path)
  assert count(variables['params']) == sum(p.numel() for p in reference.parameters())

  pixels, images = raw_and_normalised(2, 64, 96, 3)
  expected = torchvision_resnet_features(reference, images)
  with torch.no_grad():
    expected_logits = reference(images).numpy()
  ours = model.apply(variables, pixels, train=False)
  assert set(ours) == set(expected) | {'logits'}
  for name, value in expected.items():
    assert_close(ours[name], nhwc(value), name)
  assert_close(ours['logits'], expected_logits, 'logits')


def deeplab_pooling(features: torch.nn.Sequential) -> torch.nn.Sequential:
  """VGG's `features` with DeepLab's 3x3 stride 2 max pools (padding 1) for its 2x2 ones."""
  return torch.nn.Sequential(*(
      torch.nn.MaxPool2d(3, 2, 1) if isinstance(layer, torch.nn.MaxPool2d) else layer
      for layer in features))


@pytest.mark.parametrize('arch,feature,left_out', [
    ('mobilenet_v2', 'stage7', ['classifier.1', 'features.18.0', 'features.18.1']),
    ('vgg16', 'pool5', ['classifier.0', 'classifier.3', 'classifier.6']),
    ('vgg16_bn', 'pool5', ['classifier.0', 'classifier.3', 'classifier.6'])])
def test_backbone_matches_torchvision(arch, feature, left_out, tmp_path):
  """Our last feature against torchvision's `features`: MobileNetV2's without its final 1x1
  conv, which DeepLab drops; VGG-16's with DeepLab's pooling (our VGG16 pools 3x3, stride 2,
  padding 1, torchvision 2x2, stride 2), so the converted weights are checked, not the pools."""
  reference = torchvision_model(arch)
  model, variables = convert_via_file(reference, arch, tmp_path)
  assert tv_convert.left_out(reference.state_dict(), arch) == left_out

  pixels, images = raw_and_normalised(1, 64, 96, 3)
  layers = (reference.features[:-1] if arch == 'mobilenet_v2'
            else deeplab_pooling(reference.features))
  with torch.no_grad():
    expected = layers(images)
  ours = jax.jit(functools.partial(model.apply, train=False))(variables, pixels)
  assert_close(ours[feature], nhwc(expected), feature)


def test_backbone_only_archs_name_wrong_inputs():
  state_dict = torchvision_model('mobilenet_v2').state_dict()
  with pytest.raises(ValueError, match='num_classes=10, but our mobilenet_v2 has no classifier'):
    tv_convert.convert(state_dict, 'mobilenet_v2', num_classes=10)
  with pytest.raises(ValueError, match="no counterpart in our vgg16 for torchvision module "
                     "'features.0.0'"):
    tv_convert.convert(state_dict, 'vgg16')


@pytest.mark.parametrize('arch,torchvision_count', [
    ('deeplabv3_resnet50', 39_638_869), ('deeplabv3_resnet101', 58_630_997)])
def test_parameter_counts_without_aux_head(arch, torchvision_count):
  model = tv_convert.create_torchvision_model(arch, num_classes=21)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 65, 65, 3)), train=False))
  assert count(shapes['params']) == torchvision_count
  assert count(shapes['params']) == sum(
      p.numel() for p in torchvision_model(arch).parameters())


def test_dilation_policy_is_torchvisions():
  # torchvision's layer3 and layer4 at output stride 8: the first block keeps the rate before.
  reference = torchvision_model('deeplabv3_resnet50').backbone
  torch_rates = [[block.conv2.dilation[0] for block in getattr(reference, f'layer{i}')]
                 for i in range(1, 5)]
  torch_strides = [getattr(reference, f'layer{i}')[0].conv2.stride[0] for i in range(1, 5)]
  config = tv_convert.model_config('deeplabv3_resnet50', 21)
  schedule = atrous_schedule((3, 4, 6, 3), config.output_stride, config.multi_grid,
                             config.keep_rate_in_first_unit)
  assert [list(rates) for _, rates in schedule] == torch_rates
  assert [stride for stride, _ in schedule] == torch_strides


def test_wrong_state_dicts_are_named():
  state_dict = torchvision_model('resnet50').state_dict()
  with pytest.raises(ValueError, match="no 'classifier.4.weight'"):
    tv_convert.convert(state_dict, 'deeplabv3_resnet50')
  with pytest.raises(ValueError, match='num_classes=10, but the state dict has 1000'):
    tv_convert.convert(state_dict, 'resnet50', num_classes=10)
  state_dict['layer1.0.conv1.weight'] = state_dict['layer1.0.conv1.weight'][:32]
  with pytest.raises(ValueError, match=r'layer1\.0\.conv1\.weight: shape \(1, 1, 64, 32\)'):
    tv_convert.convert(state_dict, 'resnet50')


def test_command_line_writes_loadable_variables(tmp_path):
  reference = torchvision_model('deeplabv3_resnet50', aux_loss=True)
  torch.save(reference.state_dict(), tmp_path / 'model.pth')
  output = tmp_path / 'converted'
  command = [sys.executable, '-m', 'deeplab_jax.convert', 'torchvision', '--arch',
             'deeplabv3_resnet50', '--input', str(tmp_path / 'model.pth'), '--output', str(output)]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert '42,004,074 parameters' in result.stdout
  again = subprocess.run(command, capture_output=True, text=True, check=False)
  assert again.returncode != 0 and 'already holds converted variables' in again.stderr
  loaded = checkpointing.load_variables(str(output))
  expected = reference.state_dict()
  np.testing.assert_array_equal(
      loaded['params']['classifier']['bias'], expected['classifier.4.bias'].numpy())
  np.testing.assert_array_equal(
      loaded['batch_stats']['aux_head']['conv']['bn']['var'],
      expected['aux_classifier.1.running_var'].numpy())
  # model.json's config rebuilds the same architecture.
  config = ml_collections.ConfigDict(json.loads((output / 'model.json').read_text())['model'])
  shapes = jax.eval_shape(functools.partial(
      create_model(config).init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)), train=False))
  assert jax.tree.map(np.shape, shapes['params']) == jax.tree.map(np.shape, loaded['params'])


def test_command_line_converts_mobilenet_v2_for_the_deeplab_recipe(tmp_path):
  torch.save(torchvision_model('mobilenet_v2').state_dict(), tmp_path / 'mobilenet_v2.pth')
  output = tmp_path / 'converted'
  result = subprocess.run(
      [sys.executable, '-m', 'deeplab_jax.convert', 'torchvision', '--arch', 'mobilenet_v2',
       '--input', str(tmp_path / 'mobilenet_v2.pth'), '--output', str(output)],
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert ('Left out classifier.1, features.18.0, features.18.1: the final 1x1 conv'
          in result.stdout)
  assert 'model' not in json.loads((output / 'model.json').read_text())

  # configs/voc_mobilenetv2.py (DeepLabV3, mobile head) restores the whole backbone from it.
  report = restore_backbone_into_recipe('voc_mobilenetv2', output)
  assert {path.split('/')[1] for path in report.left_at_init} == {'aspp', 'classifier'}
  assert not report.unused and not report.fresh_classifier


class Payload:
  """Pickles as a call to os.mkdir: what loading the file with plain unpickling would run."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return os.mkdir, (self.path,)


def test_a_pth_carrying_a_pickle_payload_is_refused_without_running_it(tmp_path):
  marker = tmp_path / 'the_payload_ran'
  path = tmp_path / 'resnet18.pth'
  torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'extra': Payload(str(marker))}, path)
  with pytest.raises(SystemExit, match=rf'--input: {path} holds more than tensors, and it is '
                     r'not unpickled: .*mkdir'):
    convert_main.load_torch_state_dict(str(path))
  assert not marker.exists()
  # Plain unpickling would have run it: the test's payload is real.
  torch.load(path, weights_only=False)
  assert marker.is_dir()


def restore_backbone_into_recipe(recipe: str, output) -> pretrained.Report:
  """Merges the converted variables in `output` into the model of configs/<recipe>.py, checks
  that its whole backbone comes from them, and returns the merge's report."""
  model = create_model(load_config(recipe).model)
  shapes = jax.eval_shape(functools.partial(
      model.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)), train=False))
  loaded = checkpointing.load_variables(str(output))
  merged, report = pretrained.merge(dict(shapes), loaded)
  for collection in ('params', 'batch_stats'):
    jax.tree.map(np.testing.assert_array_equal, merged[collection]['backbone'],
                 loaded[collection]['backbone'])
  return report
