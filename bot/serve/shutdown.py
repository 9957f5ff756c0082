"""Clean shutdown on SIGTERM (what platforms send before they stop a process) and SIGINT.

The first signal starts a graceful stop: each process stops taking new work, finishes what it
holds, saves what it must, and exits 0. The grace period bounds the waiting, since the platform
sends SIGKILL a little later anyway (Heroku after 30 s, Kubernetes after 30 s by default); a
second signal stops at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from bot.logsetup import event

log = logging.getLogger("whyfailed.serve")

DEFAULT_GRACE = 25.0  # seconds: inside the 30 s most platforms allow between SIGTERM and SIGKILL


class Shutdown:
    def __init__(self, process: str, grace: float = DEFAULT_GRACE):
        self.process, self.grace = process, grace
        self.requested = threading.Event()
        self.signal_name = ""
        self._deadline: float | None = None
        self._callbacks: list[Callable[[], None]] = []

    def install(self) -> Shutdown:
        """Handle SIGTERM and SIGINT in this (the main) thread."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle_signal)
        return self

    def on_request(self, callback: Callable[[], None]) -> None:
        """Run `callback` (in a thread of its own, so a signal handler never blocks) when a stop is asked."""
        self._callbacks.append(callback)

    def request(self, signal_name: str = "request") -> None:
        if self.requested.is_set():
            return
        self.signal_name = signal_name
        self._deadline = time.monotonic() + self.grace
        event(log, "stopping", process=self.process, signal=signal_name, grace_seconds=self.grace)
        self.requested.set()
        for callback in self._callbacks:
            threading.Thread(target=callback, name=f"shutdown-{self.process}", daemon=True).start()

    def handle_signal(self, signum: int, _frame=None) -> None:
        """The first signal asks for a graceful stop; a second one exits at once."""
        name = signal.Signals(signum).name
        if self.requested.is_set():  # a second signal: the person or platform will not wait
            event(log, "stopped at once", process=self.process, signal=name)
            logging.shutdown()
            os._exit(1)
        self.request(name)

    def wait(self) -> None:
        """Block the main thread until a stop is asked. Waits in short steps so that the signal
        handler, which Python runs between bytecodes of the main thread, runs promptly."""
        while not self.requested.wait(0.5):
            pass

    def remaining(self) -> float:
        if self._deadline is None:
            return self.grace
        return max(0.0, self._deadline - time.monotonic())

    def join(self, work: Callable[[], None], what: str) -> bool:
        """Run `work` (a drain: join threads, flush a pool) within what is left of the grace
        period. True if it finished; False (and a log line) if the grace period ran out."""
        done = threading.Event()

        def run() -> None:
            try:
                work()
            finally:
                done.set()

        threading.Thread(target=run, name=f"drain-{what}", daemon=True).start()
        if done.wait(self.remaining()):
            return True
        log.warning("%s did not finish within the %.0f s grace period", what, self.grace)
        return False

    def finished(self, clean: bool, **fields) -> int:
        """Log the structured last line and return the exit status, 0. When the grace period ran
        out, work threads are still running and the interpreter would wait for them at exit: leave
        at once instead (what was committed is kept; the rest was never acknowledged as done)."""
        event(log, "stopped", process=self.process, signal=self.signal_name or "none", clean=clean, **fields)
        if not clean:
            logging.shutdown()
            os._exit(0)
        return 0
