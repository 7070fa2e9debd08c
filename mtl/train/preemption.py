"""SIGTERM-driven preemption: the loop finishes its step, saves a checkpoint and exits cleanly.

Every process must stop at the same step, so with several processes the local flags are combined (any process
signalled -> all stop) at a fixed step cadence.
"""
from __future__ import annotations

import signal
import threading

import jax
import numpy as np


class PreemptionWatcher:
  """Installs a SIGTERM handler (main thread only) and answers `should_stop(step)`.

  Args:
    sync_every: with several processes, steps between the cross-process checks (a collective); single-process
      runs check every step at no cost.
  """

  def __init__(self, sync_every: int = 10, signals: tuple[int, ...] = (signal.SIGTERM,)):
    if sync_every < 1:
      raise ValueError(f"preemption sync_every must be >= 1, got {sync_every}")
    self.sync_every = sync_every
    self._event = threading.Event()
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for s in signals:
        self._previous[s] = signal.signal(s, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self._event.set()

  def trigger(self) -> None:
    """Marks this process as preempted (what the signal handler does)."""
    self._event.set()

  @property
  def signalled(self) -> bool:
    return self._event.is_set()

  def should_stop(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self.signalled
    if step % self.sync_every:
      return False
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.asarray([self.signalled], np.int32))
    return bool(np.any(flags))

  def close(self) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}
