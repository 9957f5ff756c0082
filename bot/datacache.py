"""A disk cache for data built from files we ship (the knowledge base, the code tables), next
to the Lark grammar cache: parsing thirty YAML front matters costs more than a whole
`why` query, and every command-line run would pay it again.

Keyed by the content of the source files and our version, so an edit or an upgrade never
reads stale data; an unreadable or corrupt cache is rebuilt, never fatal. Each file carries a
digest of its pickle: a damaged byte that still unpickles (a string with one letter changed,
say, which could be a regex the parsers trust) is rebuilt too, not read.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

try:  # as the standard library's random module does: hashlib loads OpenSSL, heavier than a whole query's parse
    from _sha1 import sha1
except ImportError:
    from hashlib import sha1

from bot import __version__

_CHECK = sha1().digest_size  # the digest of the pickle that starts each file


def cache_dir() -> Path:
    return Path(os.environ.get("WHYFAILED_CACHE_DIR") or Path(tempfile.gettempdir()) / "whyfailed-lark")


def cached(name: str, sources: Iterable[Path], build: Callable[[], object], key: bytes = b"") -> object:
    """build(), or what an earlier build() of the same source files (and the same KEY, for
    data that does not come from a file) left in the cache."""
    digest = sha1(__version__.encode() + b"\0" + key)
    for path in sorted(sources):
        # the whole path: what is built may name where it came from (an Article's path)
        digest.update(os.fsencode(path.absolute()) + b"\0" + path.read_bytes())
    target = cache_dir() / f"{name}-{digest.hexdigest()[:16]}.pickle"
    try:
        with open(target, "rb") as handle:
            check, payload = handle.read(_CHECK), handle.read()
        if sha1(payload).digest() == check:
            return pickle.loads(payload)
    except Exception:  # missing, truncated, from another Python: build it again
        pass
    value = build()
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_whole(target, sha1(payload).digest() + payload)
    except OSError:
        pass
    return value


def write_whole(target: Path | str, data: bytes) -> None:
    """Write DATA to TARGET so that a reader sees the whole file or none of it (a temporary
    file beside it, then an atomic rename). Raises OSError."""
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(target), delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, target)
