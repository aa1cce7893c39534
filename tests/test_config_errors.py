"""Config mistakes a new user makes: each is a ConfigError naming the key, the value and a value
that works, raised before anything is built; on the command line, one line and exit status 2."""

import ast
import subprocess
import sys

import pytest

from conftest import REPO, load_config, tiny_shapes_config
from deeplab_jax import experiment
from deeplab_jax.config_error import ConfigError
from deeplab_jax.data import datasets

# (override, the error's start, the suggested flag): each on configs/shapes.py, the tiny variant.
MISTAKES = [
    ({'model.backbone': 'resnet50'},  # shapes has resnet18's multi_grid, (1, 2).
     "config.model.multi_grid=(1, 2): resnet50 needs one rate per unit of its last stage (3)",
     "--config.model.multi_grid='(1, 2, 4)'"),
    ({'model.backbone': 'resnet200'}, "config.model.backbone='resnet200': unknown",
     '--config.model.backbone=resnet50'),
    ({'model.architecture': 'deeplabv4'}, "config.model.architecture='deeplabv4': unknown",
     '--config.model.architecture=deeplabv3plus'),
    ({'model.output_stride': 4}, 'config.model.output_stride=4: must be 8, 16 or 32',
     '--config.model.output_stride=16'),
    ({'model.atrous_rates': (6, 0, 18)}, 'config.model.atrous_rates=(6, 0, 18): rates are at least',
     "--config.model.atrous_rates='(6, 12, 18)'"),
    ({'model.num_classes': 21}, "config.model.num_classes=21: dataset 'shapes' has 4 classes",
     '--config.model.num_classes=4'),
    ({'batch_size': 6}, 'config.batch_size=6: does not split evenly over the 4 devices',
     '--config.batch_size=8'),
    ({'eval_batch_size': 2}, 'config.eval_batch_size=2: does not split evenly over the 4 devices',
     '--config.eval_batch_size=4'),
    ({'num_train_steps': 60, 'warmup_steps': 200},
     'config.warmup_steps=200: must be at least 0 and below num_train_steps=60',
     '--config.warmup_steps=6'),
    ({'crop_size': (9, 9)}, 'config.crop_size=(9, 9): takes (height, width), each at least '
     'output_stride + 1 = 17', "--config.crop_size='(65, 65)'"),
    ({'eval_crop_size': (33,)}, 'config.eval_crop_size=(33,): takes (height, width)',
     "--config.eval_crop_size='(65, 65)'"),
    ({'eval_crop_size': (33, 65)}, "config.eval_crop_size=(33, 65): validation[:20] of 'shapes' "
     'holds images up to 64x64 (every shapes image)', "--config.eval_crop_size='(65, 65)'"),
    ({'focus_crop_classes': (1, 4)}, 'config.focus_crop_classes=(1, 4): takes class ids, 0 .. 3',
     "--config.focus_crop_classes='(0,)'"),
    ({'focus_crop_probability': 1.5}, 'config.focus_crop_probability=1.5: is a probability',
     '--config.focus_crop_probability=0.5'),
    ({'eval.resize': 'long'}, "config.eval.resize='long': is one of ('long_side', 'short_side', "
     "'fit_within', 'fit_box') (or None)", '--config.eval.resize=fit_within'),
    ({'eval.resize': 'fit_within', 'eval.resize_size': (513,)},
     "config.eval.resize_size=(513,): eval.resize='fit_within' takes 2 positive side(s)",
     "--config.eval.resize_size='(2048, 512)'"),
    ({'eval.resize': 'long_side', 'eval.resize_size': (80,)},
     "config.eval_crop_size=(65, 65): validation[:20] of 'shapes' holds images up to 80x80 "
     "resized by eval.resize='long_side' (every shapes image)", "--config.eval_crop_size='(81, 81)'"),
]


def check(config):
  """What `experiment.prepare` checks before and after it looks the dataset up and prepares it."""
  experiment.check_config(config)
  info = datasets.get(config.dataset, config.folder)
  experiment.check_num_classes(config, info)
  experiment.eval_frames(config, info, datasets.prepare_builder(info, config.data_dir))


@pytest.mark.parametrize('overrides,error,suggestion', MISTAKES)
def test_mistake_is_named_with_a_value_that_works(shapes_dir, overrides, error, suggestion):
  config = tiny_shapes_config(shapes_dir)
  for key, value in overrides.items():
    section, _, name = key.rpartition('.')
    (config[section] if section else config)[name] = value
  with pytest.raises(ConfigError) as raised:
    check(config)
  message = str(raised.value)
  assert message.startswith(error) and message.endswith(f'; e.g. {suggestion}'), message
  # The suggested value passes the check of its key (another key may still need changing).
  key, _, value = suggestion.removeprefix('--config.').partition('=')
  section, _, name = key.rpartition('.')
  value = value.strip("'")
  (config[section] if section else config)[name] = (
      ast.literal_eval(value) if value[0] in '(0123456789' else value)
  try:
    check(config)
  except ConfigError as later:
    assert later.key != key, later


def test_unknown_dataset_is_named():
  config = load_config('shapes')
  config.dataset = 'pascal'
  with pytest.raises(ConfigError, match=r"config.dataset='pascal': unknown; known: \[.*'voc2012'"):
    experiment.prepare(config)


@pytest.mark.parametrize('recipe,flags,line', [
    ('voc', ['--config.model.backbone=resnet18'],
     'deeplab_jax: config.model.multi_grid=(1, 2, 4): resnet18 needs one rate per unit'),
    ('folder', ['--config.num_train_steps=60'],
     'deeplab_jax: config.warmup_steps=200: must be at least 0 and below num_train_steps=60; '
     'e.g. --config.warmup_steps=6'),
])
def test_the_command_line_says_it_in_one_line_with_exit_status_2(tmp_path, recipe, flags, line):
  finished = subprocess.run(
      [sys.executable, '-m', 'deeplab_jax.main', f'--config=configs/{recipe}.py',
       f'--workdir={tmp_path}', *flags], cwd=REPO, capture_output=True, text=True, check=False,
      timeout=300)
  assert finished.returncode == 2, finished.stderr[-3000:]
  lines = [text for text in finished.stderr.splitlines() if text.startswith('deeplab_jax: ')]
  assert lines and lines[0].startswith(line), finished.stderr[-3000:]
  assert 'Traceback' not in finished.stderr
