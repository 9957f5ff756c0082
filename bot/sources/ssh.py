"""A log on another host, read over SSH (asyncssh): key authentication, host keys checked
against a known_hosts file, resumed from a byte offset, reconnected with backoff.

The remote side runs only `stat` and `tail -c +OFFSET [-F]`. We count the bytes and lines we
receive, and each chunk is written together with the position reached (the remote file's
inode, byte offset and line count), so a restart asks for exactly the bytes not yet indexed.
On reconnect a file that was rotated away while we were gone is finished first (found as
PATH.1 by its inode), and a file that shrank was truncated and is read from its start. While
following, tail's own notices ("has been replaced", "file truncated") arrive in order with the
data (its stderr is merged into stdout), and start the count again at the new file's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from bot.ingest import IngestStats, parse_chunk, write_parsed
from bot.store import Position, Store

log = logging.getLogger("whyfailed.sources.ssh")

MAX_LINE = 16 * 1024
_NEW_FILE = ("has been replaced", "has appeared", "file truncated")


class SshSourceError(Exception):
    """The host could not be read: the message says what was wrong and what to do."""


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str
    path: str
    port: int = 22
    key: str | None = None  # private key file; None: the keys of a running ssh-agent
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    connect_timeout: float = 10.0

    @property
    def key_name(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{self.path}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def known_hosts_path(target: SshTarget) -> Path:
    return Path(target.known_hosts or "~/.ssh/known_hosts").expanduser()


async def connect(target: SshTarget) -> asyncssh.SSHClientConnection:
    """An authenticated connection, or SshSourceError saying why not. Host keys are always
    checked: there is no switch to turn that off."""
    known = known_hosts_path(target)
    if not known.is_file():
        raise SshSourceError(
            f"{target.where}: the known_hosts file {known} does not exist. whyfailed checks host keys: "
            f"add the host's key after checking its fingerprint "
            f"(ssh-keyscan -p {target.port} {target.host} >> {known})."
        )
    options = {
        "port": target.port,
        "username": target.user,
        "known_hosts": str(known),
        "config": None,  # ~/.ssh/config is not read: what is configured here is what is used
        "preferred_auth": "publickey",
        "connect_timeout": target.connect_timeout,
    }
    if target.key:
        options |= {"client_keys": [target.key], "agent_path": None}
    try:
        return await asyncio.wait_for(asyncssh.connect(target.host, **options), target.connect_timeout + 5)
    except asyncssh.HostKeyNotVerifiable as error:
        raise SshSourceError(
            f"{target.where}: the host key is not trusted ({error.reason}). Host-key checking is on: check the "
            f"key's fingerprint with the host's admin, then add it to {known}."
        ) from None
    except asyncssh.PermissionDenied:
        raise SshSourceError(
            f"{target.where}: {target.user} was refused with key {target.key or '(ssh-agent)'}: is its public key "
            f"in ~{target.user}/.ssh/authorized_keys on {target.host}?"
        ) from None
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as error:
        raise SshSourceError(f"{target.where}: cannot use the key {target.key}: {error}") from None
    except ConnectionRefusedError:
        raise SshSourceError(
            f"{target.where} refused the connection: is sshd running there and listening on port {target.port}?"
        ) from None
    except TimeoutError:
        raise SshSourceError(f"{target.where}: no answer within {target.connect_timeout:.0f} s") from None
    except socket.gaierror as error:
        raise SshSourceError(f"{target.host}: cannot resolve the host name ({error.strerror})") from None
    except FileNotFoundError as error:
        raise SshSourceError(f"{target.where}: {error.filename}: no such file") from None
    except (OSError, asyncssh.Error) as error:
        raise SshSourceError(f"{target.where}: {error}") from None


@dataclass
class _Cursor:
    """Where we are in the remote file, and the lines not yet written."""

    key: str
    inode: int
    offset: int
    lines: int
    pending: list[str]
    pending_bytes: int = 0
    rest: bytes = b""


async def _stat(conn: asyncssh.SSHClientConnection, path: str) -> tuple[int, int] | None:
    result = await conn.run(f"stat -L -c '%i %s' -- {shlex.quote(path)}", check=False)
    fields = str(result.stdout or "").split()
    if result.exit_status != 0 or len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    return int(fields[0]), int(fields[1])


class SshReader:
    """Reads one remote file into the store, chunk by chunk."""

    def __init__(self, store: Store, name: str, target: SshTarget, batch_lines: int = 2000, flush_seconds=1.0):
        self.store, self.name, self.target = store, name, target
        self.batch_lines, self.flush_seconds = batch_lines, flush_seconds
        self.stats = IngestStats()

    async def run(self, follow: bool = False, stop: asyncio.Event | None = None) -> IngestStats:
        """One connection: catch up (finishing a rotated file first), then with `follow`
        keep tailing until `stop` or until the connection drops (SshSourceError)."""
        conn = await connect(self.target)
        try:
            async with conn:
                cursor = await self._resume(conn)
                if cursor is None:
                    return self.stats
                await self._tail(conn, self.target.path, cursor, follow, stop)
        except (OSError, asyncssh.Error) as error:
            raise SshSourceError(f"{self.target.where}: the connection was lost ({error})") from None
        return self.stats

    async def _resume(self, conn) -> _Cursor | None:
        target, key = self.target, self.target.key_name
        now = await _stat(conn, target.path)
        if now is None:
            raise SshSourceError(f"{target.where}: cannot read {target.path} (no such file, or no permission)")
        inode, size = now
        saved = self.store.position(key)
        if saved is None:
            return _Cursor(key, inode, 0, 0, [])
        if saved.inode in (inode, 0) and saved.offset <= size:
            return _Cursor(key, inode, saved.offset, saved.lines, [])
        if saved.inode != inode:  # rotated while we were away: finish the old file if we find it
            rotated = f"{target.path}.1"
            old = await _stat(conn, rotated)
            if old is not None and old[0] == saved.inode and old[1] > saved.offset:
                log.info("%s: finishing %s (rotated) from byte %d", self.name, rotated, saved.offset)
                cursor = _Cursor(key, saved.inode, saved.offset, saved.lines, [])
                await self._tail(conn, rotated, cursor, follow=False, stop=None)
        return _Cursor(key, inode, 0, 0, [])  # a new file, or the same one truncated

    async def _tail(self, conn, path: str, cursor: _Cursor, follow: bool, stop: asyncio.Event | None) -> None:
        flag = " -F" if follow else ""
        command = f"exec tail -c +{cursor.offset + 1}{flag} -- {shlex.quote(path)} 2>&1"
        process = await conn.create_process(command, encoding=None)
        stopping = _waiter(stop)
        reader = asyncio.ensure_future(process.stdout.read(1 << 16))
        flush_at = 0.0
        try:
            while True:
                timeout = max(0.0, flush_at - time.monotonic()) if cursor.pending else None
                done, _ = await asyncio.wait({reader, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    data = reader.result()
                    if not data:
                        break
                    reader = asyncio.ensure_future(process.stdout.read(1 << 16))
                    had = bool(cursor.pending)
                    await self._receive(conn, cursor, data)
                    if cursor.pending and not had:
                        flush_at = time.monotonic() + self.flush_seconds
                    if len(cursor.pending) >= self.batch_lines:
                        self._flush(cursor)
                elif stopping in done:
                    break
                else:
                    self._flush(cursor)
            self._flush(cursor)
        finally:
            for task in (reader, stopping):
                task.cancel()
            with contextlib.suppress(OSError, asyncssh.Error):
                process.terminate()  # sshd passes the signal on: no tail left running remotely
            process.close()

    async def _receive(self, conn, cursor: _Cursor, data: bytes) -> None:
        lines = (cursor.rest + data).split(b"\n")
        cursor.rest = lines.pop()  # a last line without its newline waits for the rest of it
        for raw in lines:
            if raw.startswith(b"tail: "):
                await self._notice(conn, cursor, raw.decode("utf-8", "replace"))
                continue
            cursor.pending.append(raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r"))
            cursor.pending_bytes += len(raw) + 1
        if len(cursor.rest) > 4 * MAX_LINE:  # a runaway line: keep its start, count all of it
            cursor.pending.append(cursor.rest[:MAX_LINE].decode("utf-8", "replace"))
            cursor.pending_bytes += len(cursor.rest)
            cursor.rest = b""

    async def _notice(self, conn, cursor: _Cursor, notice: str) -> None:
        """tail's word, in order with the data: a new file means counting from its start."""
        if not any(marker in notice for marker in _NEW_FILE):
            log.warning("%s: %s", self.name, notice)
            return
        log.info("%s: %s", self.name, notice)
        self._flush(cursor)
        cursor.rest = b""
        now = await _stat(conn, self.target.path)
        cursor.inode, cursor.offset, cursor.lines = (now[0] if now else 0), 0, 0

    def _flush(self, cursor: _Cursor) -> None:
        if not cursor.pending:
            return
        first = cursor.lines + 1
        end_lines, end_offset = cursor.lines + len(cursor.pending), cursor.offset + cursor.pending_bytes
        parsed = parse_chunk(cursor.pending, first)
        position = Position(cursor.key, cursor.inode, end_offset, end_lines)
        write_parsed(self.store, self.name, parsed, position, self.stats)
        cursor.lines, cursor.offset = end_lines, end_offset
        cursor.pending, cursor.pending_bytes = [], 0


def _waiter(stop: asyncio.Event | None) -> asyncio.Future:
    """A future done when `stop` is set (never, without one)."""
    return asyncio.ensure_future(stop.wait()) if stop is not None else asyncio.get_running_loop().create_future()


async def follow_ssh(
    store: Store,
    name: str,
    target: SshTarget,
    stop: asyncio.Event,
    max_backoff: float = 60.0,
    batch_lines: int = 2000,
    flush_seconds: float = 1.0,
) -> IngestStats:
    """Keep the remote log indexed until `stop`. A host that is down, refuses SSH or drops the
    connection is logged and tried again (after 1, 2, 4 ... up to `max_backoff` seconds)."""
    reader = SshReader(store, name, target, batch_lines, flush_seconds)
    delay = 1.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await reader.run(follow=True, stop=stop)
        except SshSourceError as error:
            log.error("ssh source %s: %s; trying again in %.0f s", name, error, delay)
        if stop.is_set():
            break
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, max_backoff)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return reader.stats
