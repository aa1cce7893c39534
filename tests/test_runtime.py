"""Serving imports nothing of training, importing the library changes nothing global, the
command-line tools' start hides the accelerators from TensorFlow, which only feeds the host, and
joins a multi-process job when told to or on a TPU pod slice."""

import subprocess
import sys

import jax
import pytest

from conftest import REPO
from deeplab_jax import runtime

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


def test_joining_a_job(monkeypatch):
  calls = []

  def initialize(**kwargs):
    calls.append(kwargs)
    if 'coordinator_address' not in kwargs:
      raise ValueError('coordinator_address should be defined.')  # What JAX says off a pod.

  monkeypatch.setattr(jax.distributed, 'initialize', initialize)
  monkeypatch.setattr(runtime, 'has_tpu_chips', lambda: False)
  runtime.join_job(None, None, None, 30)  # A laptop: nothing to join.
  assert not calls
  runtime.join_job('host:1234', 2, 1, 30)  # Explicit: as given.
  assert calls == [{'coordinator_address': 'host:1234', 'num_processes': 2, 'process_id': 1,
                    'heartbeat_timeout_seconds': 30}]
  with pytest.raises(ValueError, match=r"missing: \['process_id'\]"):
    runtime.join_job('host:1234', 2, None, 30)
  calls.clear()
  monkeypatch.setattr(runtime, 'has_tpu_chips', lambda: True)
  runtime.join_job(None, None, None, 30)  # A TPU VM: JAX detects the pod slice, or finds none.
  assert calls == [{'heartbeat_timeout_seconds': 30}]
