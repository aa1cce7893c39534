"""Every DeepLab version trains and evaluates through the same loop on the embedded dataset."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_shapes_config
from deeplab_jax import train

VERSIONS = {  # architecture, backbone, output stride, rates, separable convs
    'v1_vgg16': ('deeplabv1', 'vgg16', 8, (12,), False),
    'v2_resnet18': ('deeplabv2', 'resnet18', 8, (1, 2, 3, 4), False),
    # Xception-41 is Xception-65 less 8 middle blocks (whose compilation is this test's cost).
    'v3plus_xception41': ('deeplabv3plus', 'xception41', 16, (1, 2, 3), True),
    'v3_mobilenetv2': ('deeplabv3', 'mobilenetv2', 16, (), False),
}
# The training tools of the papers' recipes, and the loss options, through the same loop.
TRAINING = {
    'v1_vgg16': {'lr_schedule': 'step', 'lr_step_size': 1, 'class_weights': 'median_frequency',
                 'top_k_percent_pixels': 0.5, 'learning_rate_multipliers': (('classifier', 10.0),)},
    'v2_resnet18': {'model.freeze_batch_norm': True, 'ohem_threshold': 0.7, 'ohem_min_kept': 100,
                    'learning_rate_multipliers': (('/bn/', 0.0), ('classifier', 10.0))},
}


@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_version_trains_and_evaluates(version, shapes_dir, tmp_path):
  config = tiny_shapes_config(shapes_dir)
  model = config.model
  (model.architecture, model.backbone, model.output_stride, model.atrous_rates,
   model.separable_conv) = VERSIONS[version]
  model.multi_grid, model.large_fov_features = (1, 1), 16
  config.num_train_steps = 2
  for key, value in TRAINING.get(version, {}).items():
    section, _, name = key.rpartition('.')
    (config[section] if section else config)[name] = value
  config.eval_split = 'validation[:8]'
  workdir = str(tmp_path)
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 2
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['2']
  scalars = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name in ('', 'scalars'):
          scalars[value.tag] = float(tf.make_ndarray(value.tensor)) if value.HasField(
              'tensor') else value.simple_value
  assert np.isfinite(scalars['train/loss']) and scalars['train/loss'] > 0
  assert 0 <= scalars['eval/mean_iou'] <= 1
