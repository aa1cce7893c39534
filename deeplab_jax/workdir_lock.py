"""A lease on a workdir, so that a second training job started on a workdir that a live job is
using refuses at once instead of racing it (interleaved checkpoints, summaries and eval files).

Process 0 of a job holds `<workdir>/lock.json`; the other processes of a multi-host job share the
workdir under it and take nothing. The file names the holder (host, boot, PID namespace, pid and
the pid's start time) and carries a heartbeat counter that a thread bumps. A holder on this
machine is checked directly, so a rerun after a crash, kill -9 included, takes over at once; one
on another machine is dead once its heartbeat has stood still for `stale_seconds`.

All goes through tf.io.gfile, so gs:// works. It has no atomic create-if-absent (nor has GCS a
rename), so each write is read back after `settle_seconds`: the last writer wins, the others see
its live lease and refuse.
"""

import json
import os
import pathlib
import socket
import threading
import time
import uuid

from absl import logging
import tensorflow as tf


class WorkdirInUse(RuntimeError):
  """Another live job holds the workdir."""


def _proc(name: str, read=pathlib.Path.read_text) -> str | None:
  """/proc/<name>, read with `read`; None where it does not exist (macOS, or a gone pid)."""
  try:
    return read(pathlib.Path('/proc', name)).strip()
  except OSError:
    return None


def _process_start(pid: int) -> str | None:
  """When `pid` started (field 22 of /proc/<pid>/stat), so that a reused pid is told apart;
  None if it is gone, a zombie, or there is no /proc."""
  stat = _proc(f'{pid}/stat')
  if stat is None:
    return None
  fields = stat.rpartition(')')[2].split()  # Fields 3.. follow the name, which may hold spaces.
  return None if fields[0] == 'Z' else fields[19]


def _machine() -> dict[str, str | None]:
  """This host, its boot and PID namespace: where the holder's pid means the same process."""
  return {'host': socket.gethostname(), 'boot_id': _proc('sys/kernel/random/boot_id'),
          'pid_namespace': _proc('self/ns/pid', os.readlink)}


def _alive(holder: dict) -> bool:
  """Whether `holder`, a process of this machine, still runs."""
  if holder['start'] is not None:
    return _process_start(holder['pid']) == holder['start']
  try:  # No /proc: the pid alone.
    os.kill(holder['pid'], 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # It runs, as another user.
    pass
  return True


class WorkdirLock:
  """The lease on `workdir`, as a context manager or by acquire() and release().

  The holder bumps its heartbeat every `heartbeat_seconds`; one on another machine whose
  heartbeat stands still for `stale_seconds` (default 3 heartbeats) is taken over. Each write
  is read back after `settle_seconds` (default 0.1 s on a local disk, 1 s on gs://).
  """

  def __init__(self, workdir: str, heartbeat_seconds: float = 10.0,
               stale_seconds: float | None = None, settle_seconds: float | None = None):
    self.workdir = workdir
    self.path = tf.io.gfile.join(workdir, 'lock.json')
    self.heartbeat_seconds = heartbeat_seconds
    self.stale_seconds = 3 * heartbeat_seconds if stale_seconds is None else stale_seconds
    # Renames on a local disk land at once; on object stores (gs://) they take a while.
    self.settle_seconds = ((1.0 if '://' in workdir else 0.1) if settle_seconds is None
                           else settle_seconds)

  def acquire(self) -> None:
    """Takes the lease, over a dead holder's; raises WorkdirInUse if a live job holds it."""
    tf.io.gfile.makedirs(self.workdir)
    self._record = {**_machine(), 'pid': os.getpid(), 'start': _process_start(os.getpid()),
                    'since': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                    'token': uuid.uuid4().hex, 'heartbeat': 0}
    while True:
      holder = self._read()
      if holder is not None:
        self._refuse_if_alive(holder)
      self._write()
      time.sleep(self.settle_seconds)
      if self._ours(self._read()):
        break
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat, name='workdir_lock', daemon=True)
    self._thread.start()
    logging.info('This job holds %s.', self.path)

  def release(self) -> None:
    """Stops the heartbeat and deletes the lock file if it is still ours."""
    self._stop.set()
    self._thread.join()
    if self._ours(self._read()):
      tf.io.gfile.remove(self.path)

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()

  def _refuse_if_alive(self, holder: dict) -> None:
    """Raises WorkdirInUse if `holder` still runs: asked directly on this machine, else seen by
    its heartbeat advancing within stale_seconds."""
    if all(holder.get(key) == value for key, value in _machine().items()):
      if _alive(holder):
        raise WorkdirInUse(self._message(holder))
      logging.warning('%s was held by pid %d of this machine, which is gone: taking it over.',
                      self.path, holder['pid'])
      return
    logging.warning('%s is held by pid %d on %s, another machine (or boot): waiting up to %.0f s '
                    'for its heartbeat to tell whether it still runs.', self.path, holder['pid'],
                    holder['host'], self.stale_seconds)
    deadline = time.monotonic() + self.stale_seconds
    while (left := deadline - time.monotonic()) > 0:
      time.sleep(min(left, self.heartbeat_seconds / 2))
      current = self._read()
      if current != holder:
        if current is None:  # Released.
          return
        raise WorkdirInUse(self._message(current))
    logging.warning('The heartbeat of %s stood still for %.0f s: taking it over.', self.path,
                    self.stale_seconds)

  def _message(self, holder: dict) -> str:
    return (f'The workdir {self.workdir} is in use by another training job: pid {holder["pid"]} '
            f'on {holder["host"]}, which took {self.path} at {holder["since"]}. Give this job '
            'another --workdir, or stop that job first; the lock of a job that crashed is taken '
            'over by itself.')

  def _beat(self) -> None:
    """Bumps the heartbeat until released, or until another job has taken the lease over."""
    while not self._stop.wait(self.heartbeat_seconds):
      try:
        holder = self._read()
        if not self._ours(holder):
          logging.error('This job no longer holds %s (now %s): another job took it over, or '
                        'it was deleted.', self.path, holder)
          return
        self._record['heartbeat'] += 1
        self._write()
      except tf.errors.OpError as error:  # A passing storage error must not end the heartbeat.
        logging.warning('Could not renew %s: %s', self.path, error)

  def _ours(self, holder: dict | None) -> bool:
    return holder is not None and holder['token'] == self._record['token']

  def _read(self) -> dict | None:
    try:
      with tf.io.gfile.GFile(self.path) as file:
        return json.load(file)
    except tf.errors.NotFoundError:
      return None

  def _write(self) -> None:
    """Writes our record whole: a reader never sees half of it."""
    temp = f'{self.path}.{self._record["token"]}.tmp'
    with tf.io.gfile.GFile(temp, 'w') as file:
      file.write(json.dumps(self._record))
    tf.io.gfile.rename(temp, self.path, overwrite=True)
