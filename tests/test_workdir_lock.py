"""A second job on a live job's workdir is refused naming the holder; a dead holder's lock, on this
machine (kill -9) or on another (a heartbeat that stands still), is taken over."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from deeplab_jax.workdir_lock import WorkdirInUse, WorkdirLock

FAST = {'heartbeat_seconds': 0.1, 'stale_seconds': 0.6, 'settle_seconds': 0.05}
WAITING = 'another machine'  # In the log record of the wait on a holder elsewhere.
HOLDER = f"""
import sys, time
from deeplab_jax.workdir_lock import WorkdirLock
WorkdirLock(sys.argv[1], **{FAST}).acquire()
print('held', flush=True)
time.sleep(120)
"""


def start_holder(workdir: str) -> subprocess.Popen:
  """A process that holds `workdir`'s lock, once it has printed 'held'."""
  holder = subprocess.Popen([sys.executable, '-c', HOLDER, workdir], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  output = []
  for line in holder.stdout:
    output.append(line)
    if line.strip() == 'held':
      return holder
  holder.kill()
  raise AssertionError(f'the holder did not take the lock:\n{"".join(output)}')


def write_lock(workdir, heartbeat: int) -> None:
  """A lock file as a job on another machine writes it."""
  record = {'host': 'other-host', 'boot_id': 'b', 'pid_namespace': 'p', 'pid': 4321,
            'start': '17', 'since': '2026-01-01 00:00:00 UTC', 'token': 'theirs',
            'heartbeat': heartbeat}
  (workdir / 'lock.json.tmp').write_text(json.dumps(record))
  os.replace(workdir / 'lock.json.tmp', workdir / 'lock.json')


def lock_token(workdir) -> str:
  return json.loads((workdir / 'lock.json').read_text())['token']


def test_a_live_holder_is_refused_and_its_kill_9_rerun_takes_over_at_once(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  holder = start_holder(str(tmp_path))
  try:
    with pytest.raises(WorkdirInUse, match=rf'{tmp_path} is in use .* pid {holder.pid} on '):
      WorkdirLock(str(tmp_path), **FAST).acquire()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert json.loads((tmp_path / 'lock.json').read_text())['pid'] == holder.pid  # Left behind.

  with WorkdirLock(str(tmp_path), **FAST) as lock:
    assert lock_token(tmp_path) == lock._record['token']
  assert f'held by pid {holder.pid} of this machine, which is gone' in caplog.text
  assert WAITING not in caplog.text  # Taken over at once, without watching a heartbeat.


def test_another_machines_lock_whose_heartbeat_stands_still_is_taken_over(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  write_lock(tmp_path, heartbeat=5)
  with WorkdirLock(str(tmp_path), **FAST) as lock:
    assert lock_token(tmp_path) == lock._record['token']
  assert WAITING in caplog.text and 'stood still' in caplog.text


def test_another_machines_lock_whose_heartbeat_advances_is_refused(tmp_path):
  stop = threading.Event()

  def beat():
    for heartbeat in range(1, 1000):
      if stop.wait(0.1):
        return
      write_lock(tmp_path, heartbeat)

  write_lock(tmp_path, heartbeat=0)
  beating = threading.Thread(target=beat)
  beating.start()
  try:
    with pytest.raises(WorkdirInUse, match='pid 4321 on other-host, which took'):
      WorkdirLock(str(tmp_path), **FAST).acquire()
  finally:
    stop.set()
    beating.join()
  assert lock_token(tmp_path) == 'theirs'


@pytest.mark.parametrize('local', [True, False])
def test_release_removes_the_lock_and_the_workdir_can_be_taken_again(tmp_path, local):
  workdir = str(tmp_path / 'work') if local else 'ram://workdir_lock_test'
  lock = WorkdirLock(workdir, **FAST)
  for _ in range(2):
    lock.acquire()
    time.sleep(0.3)  # A few heartbeats.
    assert json.loads(tf.io.gfile.GFile(lock.path).read())['heartbeat'] >= 1
    lock.release()
    assert not tf.io.gfile.exists(lock.path)
  with WorkdirLock(workdir, **FAST):
    pass


def test_of_jobs_starting_together_exactly_one_wins(tmp_path):
  barrier = threading.Barrier(4)
  outcomes = []

  def start():
    lock = WorkdirLock(str(tmp_path), **{**FAST, 'settle_seconds': 0.5})
    barrier.wait()
    try:
      lock.acquire()
      outcomes.append(lock)
    except WorkdirInUse:
      outcomes.append(None)

  threads = [threading.Thread(target=start) for _ in range(4)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  [winner] = [lock for lock in outcomes if lock is not None]
  assert len(outcomes) == 4 and lock_token(tmp_path) == winner._record['token']
  winner.release()
