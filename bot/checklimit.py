"""How often one person may have the bot run live checks from chat.

Checks read no log data, but each run sends DNS queries (and, for tls-failure, connections)
on the asker's behalf, to servers they name: one run at a time per person, and at most
`per_minute` of them in any minute, keep a chat channel from turning the bot into a query
cannon. In memory, per process: a restart forgets, which errs towards letting people ask.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 60.0


class CheckLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._started: dict[str, deque[float]] = {}

    def acquire(self, user: str) -> str | None:
        """None when USER may start a run now (call release() after it); else, why not, for them."""
        now = self._clock()
        with self._lock:
            if user in self._running:
                return "Your previous check is still running; I will take a new one once it is done."
            started = self._started.setdefault(user, deque())
            while started and now - started[0] >= WINDOW:
                started.popleft()
            if len(started) >= self.per_minute:
                wait = max(1, int(WINDOW - (now - started[0]) + 0.999))
                return (
                    f"You have asked for {self.per_minute} checks in the last minute, as many as I run for one "
                    f"person; please try again in {wait} s."
                )
            started.append(now)
            self._running.add(user)
            # forget people who stopped asking, so the table stays as small as the active users
            for idle in [u for u, times in self._started.items() if not times and u not in self._running]:
                del self._started[idle]
            return None

    def release(self, user: str) -> None:
        with self._lock:
            self._running.discard(user)
