"""One job of two processes with two CPU devices each (JAX's gloo collectives on localhost), as
the workers of a TPU pod slice run it: the same losses as one process on the same global
batches, every evaluation example counted once, one writer, shared checkpoints, resume, SIGTERM,
and a dead process that stops the job."""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import REPO
from conftest import tiny_shapes_config
from conftest import tiny_shapes_flags
from deeplab_jax import evaluate
import fixed_batches

EVAL_SPLIT = 'validation[:21]'  # 21 images: no multiple of the eval batch (8) nor of 2 processes.


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


def start_job(command: list[str], tmp_path, name: str) -> list[subprocess.Popen]:
  """Starts `command` as processes 0 and 1 of one job; their logs go to <name>_<i>.log."""
  address = f'localhost:{free_port()}'
  processes = []
  for index in range(2):
    log = open(tmp_path / f'{name}_{index}.log', 'w')  # pylint: disable=consider-using-with
    processes.append(subprocess.Popen(
        [*command, '--cpu_devices=2', f'--coordinator_address={address}', '--num_processes=2',
         f'--process_id={index}'], cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
  return processes


def finish(processes: list[subprocess.Popen], timeout: float = 300) -> list[int]:
  return [process.wait(timeout=timeout) for process in processes]


def log_text(tmp_path, name: str, index: int) -> str:
  return (tmp_path / f'{name}_{index}.log').read_text()


def wait_for(tmp_path, name: str, text: str, timeout: float = 240) -> None:
  deadline = time.monotonic() + timeout
  while not all(text in log_text(tmp_path, name, i) for i in range(2)):
    assert time.monotonic() < deadline, f'no {text!r} in the logs of {name}'
    time.sleep(0.5)


def test_two_processes_compute_what_one_computes_on_the_same_global_batches(tmp_path):
  two = start_job([sys.executable, 'tests/fixed_batches.py', *tiny_shapes_flags('unused'),
                   f'--output={tmp_path / "two.json"}'], tmp_path, 'fixed')
  one = fixed_batches.train_losses(tiny_shapes_config('unused'), 3)  # Here: 4 devices.
  assert jax.process_count() == 1 and jax.device_count() == 4
  assert finish(two) == [0, 0], log_text(tmp_path, 'fixed', 1)
  reported = [re.search(r'losses (\[.*\])', log_text(tmp_path, 'fixed', i))[1] for i in range(2)]
  assert reported[0] == reported[1]  # Both processes report the same losses.
  two_losses = json.loads((tmp_path / 'two.json').read_text())
  assert len(two_losses) == 3 and len(set(two_losses)) == 3
  np.testing.assert_allclose(two_losses, one, rtol=1e-5)


def test_two_process_training_evaluates_saves_resumes_and_stops_on_sigterm(shapes_dir, tmp_path):
  workdir = tmp_path / 'work'
  command = [sys.executable, '-m', 'deeplab_jax.main', *tiny_shapes_flags(shapes_dir),
             f'--config.eval_split={EVAL_SPLIT}', f'--workdir={workdir}']
  job = start_job(command, tmp_path, 'train')
  assert finish(job) == [0, 0], log_text(tmp_path, 'train', 1)
  losses = [re.findall(r'train/loss=([\d.]+)', log_text(tmp_path, 'train', i)) for i in range(2)]
  assert len(losses[0]) == 2 and losses[0] == losses[1]  # Steps 2 and 4, the same on both.

  # Process 0 alone writes: one TensorBoard event file, from its process id; the eval JSONs.
  [events] = glob.glob(str(workdir / 'events.out.tfevents.*'))
  assert f'.{job[0].pid}.' in events
  assert sorted(os.listdir(workdir / 'eval')) == ['2.json', '4.json']
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  scores = json.loads((workdir / 'eval' / '4.json').read_text())
  assert scores['num_images'] == 21  # Every example once, across the processes.
  # One process on the 4 devices here evaluates the same checkpoint alike.
  config = tiny_shapes_config(shapes_dir)
  config.eval_split = EVAL_SPLIT
  single = evaluate.evaluate_checkpoint(config, str(workdir))
  assert jax.process_count() == 1 and single['num_images'] == 21
  assert single['mean_iou'] == pytest.approx(scores['mean_iou'], abs=1e-6)

  # The same command with more steps resumes from step 4; SIGTERM, as a TPU maintenance event
  # sends it, makes both processes save the same step and exit cleanly.
  job = start_job([*command, '--config.num_train_steps=500',
                   '--config.checkpoint_every_steps=1000', '--config.eval_every_steps=1000'],
                  tmp_path, 'resume')
  wait_for(tmp_path, 'resume', 'Compiled the train step')
  time.sleep(1)
  for process in job:
    process.send_signal(signal.SIGTERM)
  assert finish(job, timeout=120) == [0, 0], log_text(tmp_path, 'resume', 1)
  stopped = [re.search(r'Stopped at step (\d+)', log_text(tmp_path, 'resume', i))[1]
             for i in range(2)]
  assert stopped[0] == stopped[1] and 4 < int(stopped[0]) < 500
  for index in range(2):
    assert 'Restoring checkpoint of step 4 ' in log_text(tmp_path, 'resume', index)
  assert sorted(os.listdir(workdir / 'checkpoints'), key=int) == ['2', '4', stopped[0]]


def test_a_dead_process_stops_the_other(shapes_dir, tmp_path):
  # Killed as soon as the job is up: a silent process is dead after the heartbeat timeout,
  # whatever the others are doing (compiling here, training or evaluating later).
  job = start_job([sys.executable, '-m', 'deeplab_jax.main', *tiny_shapes_flags(shapes_dir),
                   '--config.num_train_steps=10000', '--heartbeat_timeout_seconds=5',
                   f'--workdir={tmp_path / "work"}'], tmp_path, 'dead')
  wait_for(tmp_path, 'dead', 'JAX process')
  job[1].kill()
  killed = time.monotonic()
  returncode = job[0].wait(timeout=90)
  assert time.monotonic() - killed < 60
  assert returncode != 0
  assert 'another task died' in log_text(tmp_path, 'dead', 0)
