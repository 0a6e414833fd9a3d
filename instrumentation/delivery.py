"""`DeliveryThread`: runs a function on every item put, in order, on a thread of its own.

The telemetry hub hands events to it so that encoding, writing and metric updates leave
the training thread (hub.py). `put` costs the caller one deque append and nothing else:
the thread is not woken for each item (waking a thread blocked on a queue costs the
caller a system call, ~10 µs and up to ~40 µs on a 2-core VM) but looks for items every
`POLL_INTERVAL_S`, and delivers all it finds. `call_after_pending` runs a function after
everything put so far and waits for it: flushing and closing the sinks go through it, so
nothing put before is left behind.

Memory is bounded: once `max_pending` items wait, `put` says so, and the caller waits for
the thread to deliver them all (a stalled disk slows training down rather than filling
memory or losing events).

The thread is a daemon, so that a hub nobody closed cannot keep the process alive; an
`atexit` hook stops every live delivery thread (delivering what is queued, then running
the stop function) before the interpreter ends its daemons, so that a close cut short by
an exception still ends with everything delivered.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

_log = logging.getLogger(__name__)

# How long delivered work may lag behind: console lines appear at most this late.
POLL_INTERVAL_S = 0.05
DEFAULT_MAX_PENDING = 10_000

Item = TypeVar("Item")


@dataclass(frozen=True)
class _Call:
    """A function to run on the delivery thread once the items before it are delivered."""

    function: Callable[[], None]
    stop: bool
    done: threading.Event = field(default_factory=threading.Event)


class DeliveryThread(Generic[Item]):
    """Calls `deliver(item)` for every item put, in order, on its own thread, which starts
    with the first item put."""

    def __init__(
        self, deliver: Callable[[Item], None], name: str, max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._deliver = deliver
        self._max_pending = max_pending
        self._name = name
        self._queue: deque[Item | _Call] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stop: _Call | None = None

    def put(self, item: Item) -> bool:
        """Queue item for delivery, starting the thread if it has not started yet; whether
        `max_pending` items now wait, when the caller is to `wait_until_delivered`."""
        if self._thread is None:
            self._start()
        queue = self._queue
        queue.append(item)
        return len(queue) >= self._max_pending

    def wait_until_delivered(self) -> None:
        """Wait until every item put so far is delivered; called from the delivery thread
        itself (a sink that emits), it returns at once."""
        if self._thread is not threading.current_thread():
            self.call_after_pending(_nothing)

    def call_after_pending(self, function: Callable[[], None]) -> None:
        """Run function on the delivery thread after the items queued so far; return when
        it has run. Without a thread (nothing was ever put) it runs here and now."""
        self._call(_Call(function, stop=False))

    def stop(self, function: Callable[[], None]) -> None:
        """Deliver what is queued, run function there, and end the thread; items put
        later are not delivered. Waits for all of it; a repeat waits for the first."""
        with self._start_lock:
            call = self._stop
            if call is None:
                call = self._stop = _Call(function, stop=True)
                if self._thread is not None:
                    self._enqueue(call)
        if self._thread is None:
            if not call.done.is_set():
                try:
                    call.function()
                finally:
                    call.done.set()
            return
        call.done.wait()

    def _call(self, call: _Call) -> None:
        if self._thread is None or self._stop is not None:
            call.function()
            return
        self._enqueue(call)
        call.done.wait()

    def _enqueue(self, call: _Call) -> None:
        self._queue.append(call)
        self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stop is not None:
                return
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            thread.start()
            self._thread = thread
            _LIVE.add(self)

    def _run(self) -> None:
        while True:
            self._wake.wait(POLL_INTERVAL_S)
            self._wake.clear()
            while self._queue:
                item = self._queue.popleft()
                if not isinstance(item, _Call):
                    self._deliver_one(item)
                elif self._call_one(item):
                    _LIVE.discard(self)
                    return

    def _deliver_one(self, item: Item) -> None:
        try:
            self._deliver(item)
        except Exception:
            # `deliver` isolates each sink's failures; this is the last guard, so that one
            # bad item never ends the thread and leaves its waiters hanging.
            _log.exception("telemetry delivery: %s failed", self._name)

    def _call_one(self, call: _Call) -> bool:
        """Run the call; whether the thread is to stop."""
        try:
            call.function()
        except Exception:
            _log.exception("telemetry delivery: %s failed", self._name)
        finally:
            call.done.set()
        return call.stop


def _nothing() -> None:
    return None


class _Stoppable(Protocol):
    def stop(self, function: Callable[[], None]) -> None: ...


_LIVE: weakref.WeakSet[_Stoppable] = weakref.WeakSet()


def _stop_live_threads() -> None:
    for thread in list(_LIVE):
        thread.stop(_nothing)


atexit.register(_stop_live_threads)
