"""launch/: the Cloud TPU VM scripts, run against a fake gcloud that records its calls."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tarfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch'
# Every setting the scripts read from the environment, as settings.sh lists them.
SETTINGS = re.findall(r'\$\{(\w+):[=?]', (LAUNCH / 'settings.sh').read_text())
# The README's training command with this test's settings.
TRAIN = 'python -m deeplab_jax.main --config=configs/voc.py --workdir=gs://test-bucket/test-run'

# Stands in for gcloud and tensorboard: appends [program, *arguments] to $FAKE_CALLS as one JSON
# line; a queued resource's state is the next word of $FAKE_STATES (ACTIVE after the last); scp
# keeps a copy of the file it sends.
FAKE = '''#!{python}
import json, os, pathlib, shutil, sys
calls = pathlib.Path(os.environ['FAKE_CALLS'])
with calls.open('a') as f:
  f.write(json.dumps([pathlib.Path(sys.argv[0]).name] + sys.argv[1:]) + '\\n')
if 'describe' in sys.argv:
  polls = sum('describe' in line for line in calls.read_text().splitlines())
  states = os.environ.get('FAKE_STATES', '').split()
  print(states[polls - 1] if polls <= len(states) else 'ACTIVE')
if 'scp' in sys.argv:
  shutil.copy(sys.argv[sys.argv.index('scp') + 1], calls.parent / 'sent.tar.gz')
'''

# Each script with arguments, for the tests that go through all of them.
SCRIPTS = [('create', ()), ('wait', ()), ('deploy', ()), ('prepare_data', ()),
           ('train', ('--config.batch_size=32',)), ('logs', ('all',)),
           ('tensorboard', ('--port=6007',)), ('unlock', ()), ('delete', ())]


@pytest.fixture
def launch(tmp_path):
  """run(script, *args, check=True, **settings) -> (recorded calls, finished process)."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  for program in ('gcloud', 'tensorboard'):
    (bin_dir / program).write_text(FAKE.format(python=sys.executable))
    (bin_dir / program).chmod(0o755)
  calls_file = tmp_path / 'calls.jsonl'

  def run(script, *args, check=True, **settings):
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    env.update(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', FAKE_CALLS=str(calls_file),
               TMPDIR=str(tmp_path), PROJECT='test-project', ZONE='europe-west4-a',
               BUCKET='test-bucket', RUN_NAME='test-run', POLL_SECONDS='0',
               REPO_URL='https://example.com/deeplab_jax.git', REPO_REF='v1.0')
    env.update(settings)
    finished = subprocess.run([LAUNCH / f'{script}.sh', *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, check=False)
    if check:
      assert finished.returncode == 0, finished.stderr
    calls = []
    if calls_file.exists():
      calls = [json.loads(line) for line in calls_file.read_text().splitlines()]
      calls_file.unlink()
    return calls, finished

  return run


def flag(call, name):
  """The value of --name=VALUE in a recorded call, or None."""
  values = [arg.split('=', 1)[1] for arg in call if arg.startswith(f'--{name}=')]
  return values[0] if values else None


@pytest.mark.parametrize('script, workers', [
    ('deploy', {'all'}), ('train', {'all'}), ('unlock', {'all'}), ('prepare_data', {'0'})])
def test_a_pod_slice_runs_on_every_worker_but_data_preparation_on_worker_0(
    launch, script, workers):
  calls, _ = launch(script, ACCELERATOR_TYPE='v4-32')
  assert calls and {flag(call, 'worker') for call in calls} == workers


@pytest.mark.parametrize('mode', ['on-demand', 'spot', 'queued', 'queued-spot'])
def test_create_in_each_mode(launch, mode):
  calls, _ = launch('create', MODE=mode, TPU_NAME='my-tpu', ACCELERATOR_TYPE='v5litepod-32',
                    RUNTIME_VERSION='v2-alpha-tpuv5-lite')
  create = calls[0]
  assert ('--spot' in create) == mode.endswith('spot')
  assert '--preemptible' not in create
  assert flag(create, 'accelerator-type') == 'v5litepod-32'
  if mode.startswith('queued'):
    assert create[:6] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create',
                          'my-tpu-queued']
    assert flag(create, 'node-id') == 'my-tpu'
    assert flag(create, 'runtime-version') == 'v2-alpha-tpuv5-lite'
    [describe] = calls[1:]  # Waited for: the fake's queued resource is ACTIVE at once.
    assert describe[3:6] == ['queued-resources', 'describe', 'my-tpu-queued']
    assert flag(describe, 'format') == 'value(state.state)'
  else:
    assert create[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'my-tpu']
    assert flag(create, 'version') == 'v2-alpha-tpuv5-lite'
    assert len(calls) == 1


def test_wait_polls_a_queued_resource_until_it_is_active(launch):
  calls, finished = launch('wait', MODE='queued', FAKE_STATES='ACCEPTED PROVISIONING ACTIVE')
  assert len(calls) == 3
  assert 'PROVISIONING' in finished.stderr
  calls, finished = launch('wait', check=False, MODE='queued', FAKE_STATES='ACCEPTED FAILED')
  assert finished.returncode == 1 and len(calls) == 2
  assert 'deeplab-jax-queued is FAILED' in finished.stderr


def test_train_runs_the_readme_command_detached_with_a_log_per_worker(launch):
  [call], _ = launch('train', '--config.batch_size=32')
  assert call[3:6] == ['tpu-vm', 'ssh', 'deeplab-jax']
  command = flag(call, 'command')
  assert TRAIN in command
  assert (f'nohup {TRAIN} --config.data_dir=gs://test-bucket/tensorflow_datasets '
          '--config.batch_size=32 < /dev/null >> ~/deeplab_jax_logs/test-run.log 2>&1 &'
          in command)


def test_prepare_data_reads_manual_downloads_from_manual_dir(launch):
  [call], _ = launch('prepare_data', CONFIG='configs/cityscapes.py',
                     MANUAL_DIR='gs://test-bucket/manual')
  assert ('python -m deeplab_jax.main --config=configs/cityscapes.py '
          '--workdir=gs://test-bucket/test-run '
          '--config.data_dir=gs://test-bucket/tensorflow_datasets '
          '--config.manual_dir=gs://test-bucket/manual --mode=prepare') in flag(call, 'command')


def test_deploy_from_a_repository(launch):
  fetch, install = launch('deploy')[0]
  assert ('git clone -q https://example.com/deeplab_jax.git ~/deeplab_jax; cd ~/deeplab_jax; '
          'git checkout -q v1.0') in flag(fetch, 'command')
  assert 'python3.11 -m venv ~/deeplab_jax_venv' in flag(install, 'command')
  assert flag(install, 'command').endswith('python -m pip install -q -e ".[tpu]"')


@pytest.mark.skipif(not (REPO / '.git').exists(), reason='needs a git checkout')
def test_deploy_copies_the_working_tree_without_a_repository(launch, tmp_path):
  (scp, unpack, install), _ = launch('deploy', REPO_URL='', ACCELERATOR_TYPE='v4-32')
  assert scp[3:5] == ['tpu-vm', 'scp'] and flag(scp, 'worker') == 'all'
  assert scp[6] == 'deeplab-jax:deeplab_jax.tar.gz'
  with tarfile.open(tmp_path / 'sent.tar.gz') as tar:
    assert {'deeplab_jax/setup.cfg', 'deeplab_jax/deeplab_jax/main.py'} <= set(tar.getnames())
  assert 'tar -xzf ~/deeplab_jax.tar.gz -C ~' in flag(unpack, 'command')
  assert '".[tpu]"' in flag(install, 'command')
  assert not list(tmp_path.glob('deeplab_jax_*.tar.gz'))  # The local tarball is removed.


@pytest.mark.parametrize('mode, deleted', [
    ('on-demand', ['tpu-vm', 'delete', 'deeplab-jax']),
    ('queued-spot', ['queued-resources', 'delete', 'deeplab-jax-queued', '--force'])])
def test_delete_asks_no_confirmation(launch, mode, deleted):
  [call], _ = launch('delete', MODE=mode)
  assert call[3:3 + len(deleted)] == deleted and '--quiet' in call


def test_logs_and_tensorboard(launch):
  [call], _ = launch('logs')
  assert flag(call, 'worker') == '0'
  assert flag(call, 'command') == 'tail -n 100 -F ~/deeplab_jax_logs/test-run.log'
  [call], _ = launch('logs', 'all')
  assert flag(call, 'worker') == 'all'
  [call], _ = launch('tensorboard', '--port=6007')
  assert call == ['tensorboard', '--logdir=gs://test-bucket/test-run', '--port=6007']


@pytest.mark.parametrize('mode', ['spot', 'queued'])
def test_dry_run_prints_the_calls_of_a_real_run_and_makes_none(launch, mode):
  for script, args in SCRIPTS:
    if script == 'wait' and mode != 'queued':
      continue
    dry_calls, dry = launch(script, '--dry-run', *args, MODE=mode)
    assert dry_calls == []
    printed = [shlex.split(line[2:]) for line in dry.stderr.splitlines() if line[:2] == '+ ']
    assert printed == launch(script, *args, MODE=mode)[0], script


def test_every_gcloud_call_names_the_project_and_zone(launch):
  calls = [call for mode in ('on-demand', 'queued-spot') for script, args in SCRIPTS
           if script != 'wait' or mode == 'queued-spot'
           for call in launch(script, *args, MODE=mode, ACCELERATOR_TYPE='v4-32')[0]]
  gcloud = [call for call in calls if call[0] == 'gcloud']
  assert len(gcloud) > 10
  for call in gcloud:
    assert flag(call, 'project') == 'test-project', call
    assert flag(call, 'zone') == 'europe-west4-a', call


@pytest.mark.parametrize('args, settings, error', [
    (('--dryrun',), {}, 'unexpected arguments: --dryrun'),
    ((), {'MODE': 'preemptible'}, "MODE is 'preemptible'"),
    ((), {'PROJECT': ''}, 'set PROJECT'),
])
def test_a_mistake_stops_before_any_call(launch, args, settings, error):
  calls, finished = launch('create', *args, check=False, **settings)
  assert finished.returncode != 0 and error in finished.stderr
  assert calls == []
