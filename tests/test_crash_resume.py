"""kill -9 and SIGTERM during training: every rerun resumes from the newest complete checkpoint,
and the last one ends with the parameters of an uninterrupted run, bit for bit."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from deeplab_jax import checkpointing

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_killed_and_stopped_runs_resume_exactly(shapes_dir, tmp_path):
  report = tmp_path / 'records.json'
  subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'benchmarks', 'crash_resume.py'),
                  '--kills=3', '--moments=save,sigterm,step', '--steps=10',
                  '--checkpoint_every=3', f'--workdir={tmp_path}', f'--data_dir={shapes_dir}',
                  f'--json={report}'],
                 check=False, capture_output=True)
  records = json.loads(report.read_text())['records']
  save_kill, sigterm, step_kill, last = records
  assert save_kill['signal'] == 'SIGKILL' and save_kill['partial_seen']
  assert sigterm['signal'] == 'SIGTERM' and sigterm['returncode'] == 0
  assert sigterm['complete'][-1] == sigterm['last_step']  # It saved the step it stopped at.
  assert step_kill['signal'] == 'SIGKILL' and step_kill['returncode'] == -9
  for before, after in zip(records, records[1:]):
    assert after['restored'] == (before['complete'] or [0])[-1]
  assert last['returncode'] == 0 and last['complete'][-1] == 10

  def final_state(name):
    arrays = checkpointing.load_arrays(checkpointing.checkpoint_dir(str(tmp_path / name)) /
                                       '10' / 'default')
    return {key: arrays[key] for key in ('params', 'batch_stats', 'opt_state')}

  jax.tree.map(np.testing.assert_array_equal, final_state('killed'), final_state('reference'))
