"""Serving imports nothing of training, importing the library changes nothing global, and the
command-line tools' start hides the accelerators from TensorFlow, which only feeds the host."""

import subprocess
import sys

from conftest import REPO

SCRIPT = '''
import sys
import tensorflow as tf
calls = []
tf.config.set_visible_devices = lambda devices, kind=None: calls.append((devices, kind))
from deeplab_jax import checkpointing, export, inference, predict
training = {'deeplab_jax.train', 'deeplab_jax.train_state', 'deeplab_jax.schedules',
            'deeplab_jax.data.input_pipeline'}
assert not training & set(sys.modules), 'serving imported ' + str(training & set(sys.modules))
from deeplab_jax import evaluate, train
assert not calls, calls
from deeplab_jax import runtime
runtime.initialize()
assert calls == [([], 'GPU')], calls
print('ok')
'''


def test_serving_imports_no_training_and_only_runtime_hides_accelerators_from_tf():
  result = subprocess.run([sys.executable, '-c', SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'ok'
