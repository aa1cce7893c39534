"""Starting from pretrained weights: fine-tuning to another class count, backbone-only init of
configs/voc.py from a converted torchvision ResNet-101, and the training loop's `init_from`."""

import logging

import jax
import numpy as np
import pytest
import torch
import torchvision

from deeplab_jax import checkpointing
from deeplab_jax import pretrained
from deeplab_jax import sharding
from deeplab_jax import train
from deeplab_jax import train_state
from deeplab_jax.convert import torchvision as tv_convert
from deeplab_jax.models import create_model
from conftest import load_config
from conftest import tiny_shapes_config


def test_merge_restores_matches_and_reports_the_rest():
  zeros, ones = np.zeros, np.ones
  initial = {
      'params': {'backbone': {'conv': {'kernel': zeros((3, 3, 3, 8))}},
                 'aspp': {'conv': {'kernel': zeros((1, 1, 8, 8))}},
                 'classifier': {'kernel': zeros((1, 1, 8, 4)), 'bias': zeros(4)}},
      'batch_stats': {'backbone': {'bn': {'mean': zeros(8)}}}}
  checkpoint = {
      'params': {'backbone': {'conv': {'kernel': ones((3, 3, 3, 8))},
                              'logits': {'kernel': ones((8, 10))}},
                 'classifier': {'kernel': ones((1, 1, 8, 21)), 'bias': ones(21)}},
      'batch_stats': {'backbone': {'bn': {'mean': ones(8)}}}}
  merged, report = pretrained.merge(initial, checkpoint)
  np.testing.assert_array_equal(merged['params']['backbone']['conv']['kernel'], 1)
  np.testing.assert_array_equal(merged['batch_stats']['backbone']['bn']['mean'], 1)
  np.testing.assert_array_equal(merged['params']['classifier']['kernel'], 0)
  assert merged['params']['classifier']['kernel'].shape == (1, 1, 8, 4)
  np.testing.assert_array_equal(merged['params']['aspp']['conv']['kernel'], 0)
  assert sorted(report.restored) == ['batch_stats/backbone/bn/mean',
                                     'params/backbone/conv/kernel']
  assert sorted(report.fresh_classifier) == ['params/classifier/bias', 'params/classifier/kernel']
  assert report.left_at_init == ['params/aspp/conv/kernel']
  assert report.unused == ['params/backbone/logits/kernel']


def test_merge_names_other_shape_mismatches():
  initial = {'params': {'aspp': {'conv': {'kernel': np.zeros((1, 1, 8, 16))}}}}
  checkpoint = {'params': {'aspp': {'conv': {'kernel': np.zeros((1, 1, 8, 32))}}}}
  with pytest.raises(ValueError, match=r'params/aspp/conv/kernel: the checkpoint has shape '
                     r'\(1, 1, 8, 32\), the model \(1, 1, 8, 16\)'):
    pretrained.merge(initial, checkpoint)


def new_state(config, seed=0):
  mesh = sharding.create_mesh()
  return train_state.create_train_state(config, create_model(config.model), mesh, seed), mesh


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def test_fine_tuning_to_another_class_count(tmp_path, caplog):
  source = tiny_shapes_config(str(tmp_path))
  source.model.num_classes = 7
  source_state, _ = new_state(source, seed=1)
  checkpointing.save_variables(str(tmp_path / 'pretrained'), source_state.variables)

  target = tiny_shapes_config(str(tmp_path))
  fresh, mesh = new_state(target, seed=2)
  with caplog.at_level(logging.INFO, logger='absl'):
    state, report = pretrained.initialize_from(fresh, str(tmp_path / 'pretrained'), mesh)
  assert sorted(report.fresh_classifier) == ['params/classifier/bias', 'params/classifier/kernel']
  assert not report.left_at_init and not report.unused
  assert 'Classifier initialised afresh' in caplog.text and 'classifier' in caplog.text
  # Everything but the classifier comes from the checkpoint; the classifier is the fresh one.
  source_params = dict(source_state.params)
  assert_trees_equal(state.batch_stats, source_state.batch_stats)
  for name, value in state.params.items():
    assert_trees_equal(value, fresh.params[name] if name == 'classifier' else source_params[name])
  assert state.params['classifier']['kernel'].shape[-1] == 4
  assert state.params['classifier']['kernel'].sharding == fresh.params['classifier'][
      'kernel'].sharding


def test_voc_recipe_starts_its_backbone_from_converted_imagenet_resnet101(tmp_path, caplog):
  torch.manual_seed(0)
  _, variables = tv_convert.convert(torchvision.models.resnet101(weights=None).state_dict(),
                                    'resnet101')
  checkpointing.save_variables(str(tmp_path / 'resnet101'), variables)

  config = load_config('voc')
  config.crop_size = (33, 33)  # Parameter shapes do not depend on it.
  # A state of zeros in the recipe's shapes: what is restored does not depend on the values, and
  # drawing ResNet-101's 59M random parameters is slow in the tests' unoptimised XLA.
  mesh = sharding.create_mesh()
  fresh = jax.tree.map(lambda x: jax.device_put(np.zeros(x.shape, x.dtype), x.sharding),
                       train_state.abstract_train_state(config, create_model(config.model), mesh))
  with caplog.at_level(logging.INFO, logger='absl'):
    state, report = pretrained.initialize_from(fresh, str(tmp_path / 'resnet101'), mesh)
  assert_trees_equal(state.params['backbone'],
                     {k: v for k, v in variables['params']['backbone'].items() if k != 'logits'})
  assert_trees_equal(state.batch_stats['backbone'], variables['batch_stats']['backbone'])
  left = {path.split('/')[1] for path in report.left_at_init}
  assert left == {'aspp', 'decoder', 'classifier'}
  assert report.unused == ['params/backbone/logits/bias', 'params/backbone/logits/kernel']
  assert not report.fresh_classifier
  assert 'left at their initialisation: aspp/atrous1/bn, aspp/atrous1/conv' in caplog.text
  assert 'classifier, decoder/conv1/bn' in caplog.text
  assert 'not in this model, unused: backbone/logits' in caplog.text


def test_training_starts_from_init_from(shapes_dir, tmp_path):
  config = tiny_shapes_config(shapes_dir)
  source_state, _ = new_state(config, seed=5)
  source = source_state.variables
  checkpointing.save_variables(str(tmp_path / 'pretrained'), source)

  # A step with learning rate 0 leaves the parameters as they were initialised.
  config.init_from = str(tmp_path / 'pretrained')
  config.num_train_steps, config.learning_rate = 1, 0.0
  state = train.train_and_evaluate(config, str(tmp_path / 'work'))
  assert int(state.step) == 1
  assert_trees_equal(state.params, source['params'])
