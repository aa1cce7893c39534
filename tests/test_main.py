"""The command line: config overrides, unknown keys, and the VOC recipe without its data."""

import subprocess
import sys

from conftest import REPO


def run_main(*args, tmp_path):
  return subprocess.run(
      [sys.executable, '-m', 'deeplab_jax.main', f'--workdir={tmp_path}', *args],
      cwd=REPO, capture_output=True, text=True, timeout=300)


def test_unknown_config_key_is_named(tmp_path):
  result = run_main('--config=configs/shapes.py', '--config.no_such_key=3', tmp_path=tmp_path)
  assert result.returncode != 0
  assert 'no_such_key' in result.stderr


def test_voc_without_data_says_how_to_get_it(tmp_path):
  result = run_main('--config=configs/voc.py', f'--config.data_dir={tmp_path}/tfds',
                    tmp_path=tmp_path)
  assert result.returncode != 0
  assert 'VOCtrainval_11-May-2012.tar' in result.stderr
  assert 'Traceback' not in result.stderr
