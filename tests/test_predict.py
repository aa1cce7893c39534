"""`python -m deeplab_jax.predict`: label PNGs and overlays for a folder of images of different
sizes, checked against the model run directly; an unreadable file is named and the rest done."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import REPO
from conftest import tiny_shapes_flags
from deeplab_jax import checkpointing
from deeplab_jax import predict
from deeplab_jax import sharding
from deeplab_jax.data import datasets


def test_padded_sizes():
  assert [predict.padded_size(n) for n in (1, 33, 34, 64, 65, 66)] == [33, 33, 65, 65, 65, 97]


def test_input_files(tmp_path):
  for name in ('b.jpg', 'a.PNG', 'notes.txt'):
    (tmp_path / name).write_bytes(b'')
  assert predict.input_files(str(tmp_path)) == [str(tmp_path / 'a.PNG'), str(tmp_path / 'b.jpg')]
  assert predict.input_files(str(tmp_path / '*.jpg')) == [str(tmp_path / 'b.jpg')]
  assert predict.input_files(str(tmp_path / 'b.jpg')) == [str(tmp_path / 'b.jpg')]


def test_predict_command(tiny_checkpoint, shapes_dir, tmp_path):
  config, workdir = tiny_checkpoint

  inputs = tmp_path / 'inputs'
  os.makedirs(inputs)
  rng = np.random.default_rng(0)
  whole = rng.integers(0, 256, (65, 97, 3), dtype=np.uint8)  # Already k * 32 + 1: no padding.
  Image.fromarray(whole).save(inputs / 'whole.png')
  Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(inputs / 'small.jpg')
  (inputs / 'broken.png').write_bytes(b'not a png')

  output = tmp_path / 'masks'
  result = subprocess.run(
      [sys.executable, '-m', 'deeplab_jax.predict', *tiny_shapes_flags(shapes_dir),
       f'--workdir={workdir}', f'--input={inputs}', f'--output={output}'],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 1, result.stderr
  assert '1 of 3 file(s) could not be read' in result.stderr
  assert 'broken.png' in result.stderr
  assert sorted(os.listdir(output)) == ['small.png', 'small_overlay.jpg', 'whole.png',
                                        'whole_overlay.jpg']

  palette = datasets.get('shapes').palette
  with Image.open(output / 'small.png') as mask:
    assert mask.mode == 'P' and mask.size == (50, 40)
    assert np.array_equal(np.reshape(mask.getpalette()[:12], (4, 3)), palette)
    assert np.asarray(mask).max() < 4
  with Image.open(output / 'small_overlay.jpg') as overlay:
    assert overlay.size == (50, 40)

  # The label PNGs hold the model's argmax, computed here directly: the whole image as it is,
  # the small one padded to 65x65 with the recipe's mean pixel.
  model, variables, _ = checkpointing.restore_model(config, workdir, sharding.create_mesh())
  logits = model.apply(variables, whole[None].astype(np.float32), train=False)
  with Image.open(output / 'whole.png') as mask:
    np.testing.assert_array_equal(np.asarray(mask), np.argmax(logits[0], -1))
  with Image.open(inputs / 'small.jpg') as file:
    small = np.asarray(file.convert('RGB'))
  padded = np.full((1, 65, 65, 3), 127.5, np.float32)
  padded[0, :40, :50] = small
  logits = model.apply(variables, padded, train=False)[0, :40, :50]
  with Image.open(output / 'small.png') as mask:
    np.testing.assert_array_equal(np.asarray(mask), np.argmax(logits, -1))
