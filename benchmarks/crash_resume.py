"""Kills training at random moments, reruns the same command, and checks what each rerun resumed.

  python benchmarks/crash_resume.py --kills=20 --workdir=/tmp/deeplab_crash_resume
  python benchmarks/crash_resume.py --kills=3 --moments=save,sigterm,step --steps=16

Trains a tiny model on the embedded shapes dataset with `python -m deeplab_jax.main`, the same
command every time: first once uninterrupted (the reference), then in a second workdir that is
killed `--kills` times, each rerun resuming from its checkpoints, until a last run finishes.
The moments cycle through `--moments`:
- save: SIGKILL as soon as an asynchronous checkpoint write is seen under way (a
  `*.orbax-checkpoint-tmp-*` folder exists);
- step: SIGKILL at a random step between the last resume and the end, a random 0-100 ms after
  that step is logged;
- sigterm: SIGTERM at a random step (the job saves and stops by itself).
After each kill it lists the complete checkpoints (step folders) and partial ones (tmp folders)
and reads, from the next run's log, which step it restored. It checks that every rerun resumed
from the newest complete checkpoint (never a partial or an older one; 'lost' counts the steps
the interrupted run had logged beyond it, trained again), that the last run ends
at `--steps`, and that its parameters, BatchNorm statistics and optimizer state equal the
reference's bit for bit. Prints a row per kill and a summary; exits 1 if a check fails;
`--json` writes the records.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags
from etils import epath
import jax
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_integer('kills', 20, 'Interruptions before the last run.')
flags.DEFINE_list('moments', ['save', 'step'], 'Kinds of interruption, taken in turn: save, '
                  'step, sigterm.')
flags.DEFINE_integer('steps', 60, 'num_train_steps of the run.')
flags.DEFINE_integer('checkpoint_every', 5, 'checkpoint_every_steps of the run.')
flags.DEFINE_string('workdir', '/tmp/deeplab_crash_resume', 'Holds reference/, killed/, the '
                    'dataset and the XLA cache; emptied of the two runs first.')
flags.DEFINE_string('data_dir', None, 'TFDS data directory holding (or to hold) the shapes '
                    'dataset; default: <workdir>/tfds.')
flags.DEFINE_integer('seed', 0, 'Seeds the kill moments.')
flags.DEFINE_string('json', None, 'Also write the records to this file.')

STEP_LOG = re.compile(r'\] \[(\d+)\] train/')
RESTORED_LOG = re.compile(r'Restoring checkpoint of step (\d+)')
TMP_MARK = '.orbax-checkpoint-tmp'


def command(workdir: str) -> list[str]:
  """The training command, the same on every run: a tiny shapes model, a log line per step."""
  overrides = {
      'data_dir': FLAGS.data_dir or os.path.join(FLAGS.workdir, 'tfds'),
      'num_train_steps': FLAGS.steps, 'warmup_steps': 0,
      'checkpoint_every_steps': FLAGS.checkpoint_every, 'log_every_steps': 1,
      'eval_every_steps': 10 * FLAGS.steps, 'eval_split': 'validation[:8]',
      'crop_size': '(33,33)', 'min_scale': 0.5, 'max_scale': 1.5, 'batch_size': 8,
      'eval_batch_size': 8, 'max_checkpoints_to_keep': 3, 'model.width': 0.125,
      'model.aspp_features': 16, 'model.decoder_features': 16, 'model.low_level_features': 8}
  return [sys.executable, '-m', 'deeplab_jax.main', '--config=configs/shapes.py',
          f'--workdir={workdir}', *(f'--config.{key}={value}' for key, value in overrides.items())]


def checkpoints(workdir: str) -> tuple[list[int], list[str]]:
  """(steps of the complete checkpoints, names of the partial ones) in `workdir`."""
  directory = os.path.join(workdir, 'checkpoints')
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(name) for name in names if name.isdigit()), sorted(
      name for name in names if TMP_MARK in name)


def saves_under_way(workdir: str) -> set[tuple[str, int]]:
  """(name, inode) of each partial checkpoint: a save that starts again where a killed one
  left its folder makes a new folder of the same name."""
  under_way = set()
  for name in checkpoints(workdir)[1]:
    try:
      under_way.add((name, os.stat(os.path.join(workdir, 'checkpoints', name)).st_ino))
    except FileNotFoundError:  # Renamed (complete) or removed meanwhile.
      pass
  return under_way


def steps_logged(log: str) -> list[int]:
  return [int(step) for step in STEP_LOG.findall(log)]


def run_life(workdir: str, log_path: str, moment: str | None, rng: random.Random,
             resumed: int) -> dict:
  """One run of the command, interrupted at `moment` (None: left to finish)."""
  target = rng.randint(min(resumed + 1, FLAGS.steps - 1), FLAGS.steps - 1)
  with open(log_path, 'w') as log_file:
    process = subprocess.Popen(command(workdir), stdout=log_file, stderr=subprocess.STDOUT)
  record = {'moment': moment, 'signal': None}
  left_by_earlier_runs = saves_under_way(workdir)
  while process.poll() is None:
    time.sleep(0.002)
    if moment is None or record['signal']:
      continue
    if moment == 'save':
      partial = saves_under_way(workdir) - left_by_earlier_runs
      if partial:
        process.send_signal(signal.SIGKILL)
        record.update(signal='SIGKILL', partial_seen=sorted(name for name, _ in partial))
    elif max(steps_logged(epath.Path(log_path).read_text()), default=0) >= target:
      if moment == 'step':
        time.sleep(rng.uniform(0, 0.1))
      process.send_signal(signal.SIGKILL if moment == 'step' else signal.SIGTERM)
      record['signal'] = 'SIGKILL' if moment == 'step' else 'SIGTERM'
  log = epath.Path(log_path).read_text()
  complete, partial = checkpoints(workdir)
  restored = RESTORED_LOG.findall(log)
  record.update(returncode=process.returncode, restored=int(restored[0]) if restored else 0,
                last_step=max(steps_logged(log), default=resumed), complete=complete,
                partial=partial)
  return record


def final_arrays(workdir: str) -> dict:
  from deeplab_jax import checkpointing  # pylint: disable=g-import-not-at-top
  step = checkpoints(workdir)[0][-1]
  return step, checkpointing.load_arrays(
      checkpointing.checkpoint_dir(workdir) / str(step) / 'default')


def bitwise_equal(a, b) -> bool:
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(argv):
  del argv
  os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(FLAGS.workdir, 'xla_cache'))
  reference, killed = (os.path.join(FLAGS.workdir, name) for name in ('reference', 'killed'))
  for workdir in (reference, killed):
    epath.Path(workdir).rmtree(missing_ok=True)
    os.makedirs(workdir)
  rng = random.Random(FLAGS.seed)
  start = time.perf_counter()
  subprocess.run(command(reference), check=True, capture_output=True)
  print(f'reference: {FLAGS.steps} steps uninterrupted in {time.perf_counter() - start:.0f} s')

  records, previous = [], None
  print(f'{"run":>3} {"interrupted":>18} {"resumed":>7} {"last step":>9} {"lost":>4} '
        f'{"complete":>16} {"partial":>7}')
  for life in range(FLAGS.kills + 1):
    moment = FLAGS.moments[life % len(FLAGS.moments)] if life < FLAGS.kills else None
    record = run_life(killed, os.path.join(FLAGS.workdir, f'killed_{life}.log'), moment, rng,
                      previous['complete'][-1] if previous and previous['complete'] else 0)
    record['expected'] = previous['complete'][-1] if previous and previous['complete'] else 0
    record['lost'] = previous['last_step'] - record['restored'] if previous else 0
    records.append(record)
    how = f'{record["signal"]} ({moment})' if record['signal'] else 'finished'
    print(f'{life:>3} {how:>18} {record["restored"]:>7} {record["last_step"]:>9} '
          f'{record["lost"]:>4} {str(record["complete"]):>16} {len(record["partial"]):>7}')
    previous = record

  final_step, final = final_arrays(killed)
  _, want = final_arrays(reference)
  kills = [record for record in records[:-1] if record['signal']]  # Early ends are no kills.
  checks = {
      'every rerun resumed from the newest complete checkpoint':
          all(r['restored'] == r['expected'] for r in records),
      'a kill landed inside a save': not FLAGS.kills or 'save' not in FLAGS.moments or any(
          r.get('partial_seen') for r in kills),
      f'the last run finished at step {FLAGS.steps}':
          records[-1]['returncode'] == 0 and final_step == FLAGS.steps,
      'its state equals the uninterrupted run, bit for bit': bitwise_equal(
          {k: final[k] for k in ('params', 'batch_stats', 'opt_state')},
          {k: want[k] for k in ('params', 'batch_stats', 'opt_state')}),
  }
  print(f'\n{len(kills)} interruptions ({sum(r["signal"] == "SIGKILL" for r in kills)} SIGKILL, '
        f'{sum(bool(r.get("partial_seen")) for r in kills)} inside a save), {len(records) - 1} '
        f'reruns, max steps lost {max((r["lost"] for r in records), default=0)} (checkpoint '
        f'interval {FLAGS.checkpoint_every}), {time.perf_counter() - start:.0f} s in all')
  for check, passed in checks.items():
    print(f'  {"ok  " if passed else "FAIL"} {check}')
  if FLAGS.json:
    epath.Path(FLAGS.json).write_text(json.dumps({'records': records, 'checks': checks}))
  if not all(checks.values()):
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
