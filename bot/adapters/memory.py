"""What a chat process remembers between a reply and a click on its buttons: bounded, in memory.

Slack and Discord buttons carry a short token; the reply behind it (its report) is kept here,
the oldest forgotten first, so a busy workspace cannot grow it; a restart forgets everything,
by design: log data is not kept at rest, and the button then says so.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from bot.conversation import Reply


@dataclass(frozen=True)
class Kept:
    reply: Reply
    user: str  # who asked for it
    guarded: bool = False  # a /whyfailed answer: index data, shown only to whom may_query allows


class Memory:
    """What one process remembers, bounded so a busy workspace cannot grow it: the events and
    messages already answered, and the reports behind buttons (lost on restart, by design:
    log data is not kept at rest; the button then says so)."""

    def __init__(self, seen: int = 4096, replies: int = 512):
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._replies: OrderedDict[str, Kept] = OrderedDict()
        self._sizes = (seen, replies)

    def first_time(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > self._sizes[0]:
                self._seen.popitem(last=False)
            return True

    def keep(self, reply: Reply, user: str, guarded: bool = False) -> str:
        token = secrets.token_urlsafe(9)
        with self._lock:
            self._replies[token] = Kept(reply, user, guarded)
            while len(self._replies) > self._sizes[1]:
                self._replies.popitem(last=False)
        return token

    def recall(self, token: str) -> Kept | None:
        with self._lock:
            return self._replies.get(token)
