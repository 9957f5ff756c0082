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
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

try:  # as the standard library's random module does: hashlib loads OpenSSL, heavier than a whole query's parse
    from _sha1 import sha1
except ImportError:
    from hashlib import sha1

from bot import __version__

_CHECK = sha1().digest_size  # the digest of the pickle that starts each file


def cache_dir() -> Path:
    return Path(os.environ.get("WHYFAILED_CACHE_DIR") or Path(_temporary_folder()) / "whyfailed-lark")


_TEMPORARY: list[str] = []  # the folder, once found


def _temporary_folder() -> str:
    """tempfile.gettempdir(), without importing tempfile when nothing else has: it imports
    shutil, random, bz2 and lzma (5 ms, a fortieth of a `why --log` query that only reads the
    cache). The same search: $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp, the current folder,
    the first where a new file can be written (tests/test_datacache.py holds them equal)."""
    if "tempfile" in sys.modules:  # loaded anyway (by Lark, say), or its choice set by a program
        return sys.modules["tempfile"].gettempdir()
    if not _TEMPORARY:
        _TEMPORARY.append(_first_writable(_candidates()))
    return _TEMPORARY[0]


def _candidates() -> list[str]:
    folders = [os.environ[name] for name in ("TMPDIR", "TEMP", "TMP") if os.environ.get(name)]
    folders += ["/tmp", "/var/tmp", "/usr/tmp"]
    try:
        folders.append(os.getcwd())
    except OSError:
        folders.append(os.curdir)
    return folders


def _first_writable(folders: list[str]) -> str:
    for folder in folders:
        if folder != os.curdir:
            folder = os.path.abspath(folder)
        for _ in range(100):  # a name taken already: another one, as tempfile tries
            probe = os.path.join(folder, "tmp" + os.urandom(6).hex())
            try:
                handle = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                try:
                    try:
                        os.write(handle, b"blat")
                    finally:
                        os.close(handle)
                finally:
                    os.unlink(probe)
                return folder
            except FileExistsError:
                continue
            except OSError:  # not writable (or not there): the next folder
                break
    raise FileNotFoundError(f"No usable temporary directory found in {folders}")


def cached(name: str, sources: Iterable[Path], build: Callable[[], object], key: bytes = b"") -> object:
    """build(), or what an earlier build() of the same source files (and the same KEY, for
    data that does not come from a file) left in the cache."""
    digest = sha1(__version__.encode() + b"\0" + key)
    # (as strings: pathlib's sorting, absolute() and read_bytes() cost a third more for the
    # seventy-odd files a `why` run keys its caches by)
    for path in sorted(map(os.fspath, sources)):
        with open(path, "rb") as source:
            # the whole path: what is built may name where it came from (an Article's path)
            digest.update(os.fsencode(os.path.abspath(path)) + b"\0" + source.read())
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
    import tempfile  # here: reading the cache, the common case, does without it

    with tempfile.NamedTemporaryFile(dir=os.path.dirname(target), delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, target)
