"""The systemd journal: `journalctl -o json` for some units or syslog identifiers, resumed
from a cursor.

Every record is read with the journald framing (bot.parse.framing) and its program's grammar
(parse_program_message), and indexed in chunks the way files are. Exactly once across a
crash: before a chunk is written, the cursor of its last record is saved in the `cursors`
table under the entry count the chunk ends at; the chunk and the position (that entry count)
are then committed in one transaction. On restart the cursor to resume from is the one saved
under the committed count, so a crash between the two writes re-reads only the chunk that
was never committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bot.ingest import IngestStats, parse_events_chunk, write_parsed
from bot.model import Event
from bot.parse import make_event, parse_program_message
from bot.parse.framing import unframe
from bot.store import Position, Store

log = logging.getLogger("whyfailed.sources.journald")

# The fields we read: journalctl always adds __CURSOR and the timestamps.
FIELDS = "MESSAGE,SYSLOG_IDENTIFIER,_COMM,_HOSTNAME,SYSLOG_PID,_PID,SYSLOG_TIMESTAMP,_SOURCE_REALTIME_TIMESTAMP"
_CURSOR = re.compile(r'"__CURSOR" ?: ?"([^"\\]{1,512})"')
MAX_RECORD = 1 << 20  # a longer JSON line is skipped (journalctl's own limit for --all is about this)


class JournalError(Exception):
    """journalctl could not be run or stopped with an error: the message says why."""


@dataclass(frozen=True)
class JournalSelector:
    """Which records: units (-u, globs allowed: 'postfix@*'), syslog identifiers (-t), and
    where: the local journal, or a folder of journal files (-D, e.g. copied from another host)."""

    units: Sequence[str] = ()
    identifiers: Sequence[str] = ()
    directory: str | None = None
    since: str | None = None  # first run only: journalctl --since (e.g. '-7d', '2026-11-01')
    journalctl: str = "journalctl"
    extra: Sequence[str] = field(default_factory=tuple)


def journalctl_command(selector: JournalSelector, cursor: str | None, follow: bool) -> list[str]:
    command = [selector.journalctl, "--output=json", "--all", "--no-pager", "--quiet", f"--output-fields={FIELDS}"]
    if selector.directory:
        command.append(f"--directory={selector.directory}")
    command += [f"--unit={unit}" for unit in selector.units]
    command += [f"--identifier={name}" for name in selector.identifiers]
    if cursor:
        command.append(f"--after-cursor={cursor}")
    elif selector.since:
        command.append(f"--since={selector.since}")
    if follow:
        command += ["--follow", "--no-tail"]  # --no-tail: from the cursor, not the last 10 entries
    return [*command, *selector.extra]


def _render(header: dict, message: str) -> str:
    """The evidence line a person reads: journalctl -o short-iso, not the JSON record."""
    stamp = header.get("timestamp")
    program = header.get("program") or "-"
    pid = f"[{header['pid']}]" if header.get("pid") is not None else ""
    text = message.replace("\n", " ")
    return f"{stamp.isoformat() if stamp else '-'} {header.get('host') or '-'} {program}{pid}: {text}"


def journal_event(number: int, line: str) -> Event | None:
    """One `journalctl -o json` line -> an Event, read by its program's grammar (None when the
    line is not a journal record)."""
    inner, header = unframe(line)
    if header is None:
        return None
    fmt, values, _quality = parse_program_message(header, inner)
    return make_event(number, _render(header, inner), fmt, values)


# --- cursors ------------------------------------------------------------------------------


def source_key(name: str) -> str:
    return f"journald:{name}"


def saved_cursor(store: Store, key: str) -> tuple[int, str | None]:
    """(entries indexed, cursor to resume after) for a journal source."""
    position = store.position(key)
    count = position.lines if position else 0
    return count, store.cursor(key, count)


def _write(store: Store, name: str, lines: list[str], first: int, cursor: str | None, stats: IngestStats) -> None:
    key = source_key(name)
    events, unparsed = [], 0
    for number, line in enumerate(lines, start=first):
        event = journal_event(number, line)
        if event is None:
            unparsed += 1
        else:
            events.append(event)
    end = first + len(lines) - 1
    if cursor is not None:  # saved first; the position committed with the chunk says it is ours
        store.save_cursor(key, end, cursor)
    write_parsed(store, name, parse_events_chunk(events, unparsed, len(lines)), Position(key, 0, end, end), stats)
    store.forget_cursors_before(key, end)


# --- reading ------------------------------------------------------------------------------


async def read_journal(
    store: Store,
    name: str,
    selector: JournalSelector,
    follow: bool = False,
    stop: asyncio.Event | None = None,
    batch_lines: int = 1000,
    flush_seconds: float = 1.0,
    stats: IngestStats | None = None,
) -> IngestStats:
    """Index the journal from the saved cursor on; with `follow`, until `stop` is set.
    Raises JournalError when journalctl is missing or fails."""
    stats = stats if stats is not None else IngestStats()
    count, cursor = saved_cursor(store, source_key(name))
    if count and cursor is None:
        log.warning("journal source %s: no cursor saved for entry %d; reading only new entries", name, count)
        selector = replace(selector, since="now")
    command = journalctl_command(selector, cursor, follow)
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=MAX_RECORD
        )
    except FileNotFoundError:
        raise JournalError(
            f"journal source {name}: {selector.journalctl} not found (journald sources need systemd's journalctl)"
        ) from None
    errors = asyncio.ensure_future(process.stderr.read(64 * 1024))
    batch: list[str] = []
    batch_cursor: str | None = None

    def flush() -> None:
        nonlocal count, batch, batch_cursor
        if batch:
            _write(store, name, batch, count + 1, batch_cursor, stats)
            count += len(batch)
            batch, batch_cursor = [], None

    stopping = asyncio.ensure_future(stop.wait()) if stop is not None else asyncio.get_running_loop().create_future()
    reader = asyncio.ensure_future(process.stdout.readline())
    flush_at, ended = 0.0, False
    try:
        while True:
            timeout = max(0.0, flush_at - time.monotonic()) if batch else None
            done, _ = await asyncio.wait({reader, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                try:
                    raw = reader.result()
                except ValueError:  # a record longer than MAX_RECORD: skipped, and said so
                    log.warning("journal source %s: skipped a record over %d bytes", name, MAX_RECORD)
                    raw = b"\n"
                if not raw:
                    ended = True  # journalctl is exiting by itself
                    break
                reader = asyncio.ensure_future(process.stdout.readline())
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line.startswith("{"):
                    continue  # journalctl's own notices ("-- No entries --", "-- Boot ... --")
                found = _CURSOR.search(line)
                batch_cursor = found.group(1) if found else batch_cursor
                batch.append(line)
                if len(batch) == 1:
                    flush_at = time.monotonic() + flush_seconds
                if len(batch) >= batch_lines:
                    flush()
            elif stopping in done:
                break
            else:
                flush()
        flush()
    finally:
        for task in (reader, stopping):
            task.cancel()
        await _end(process, 10.0 if ended else 0.2)
    message = (await errors).decode("utf-8", "replace").strip()
    if process.returncode != 0 and not (stop is not None and stop.is_set()):
        raise JournalError(_explain(name, process.returncode, message))
    if message:
        log.info("journal source %s: journalctl said: %s", name, message)
    return stats


async def _end(process: asyncio.subprocess.Process, grace: float) -> None:
    """Wait for journalctl to exit, terminating it after `grace` seconds. (Not at once: on
    Python 3.11 a signal sent to a child that has just exited reaps it behind asyncio's back,
    and its exit status is then reported as 255.)"""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), grace)
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()


def _explain(name: str, code: int, message: str) -> str:
    hint = ""
    if "cursor" in message.lower():
        hint = " (the saved cursor is not valid for this journal: was the source pointed at another machine?)"
    elif "permission" in message.lower() or "access" in message.lower():
        hint = " (run ingest as a user in the systemd-journal or adm group)"
    return f"journal source {name}: journalctl exited with status {code}: {message or 'no message'}{hint}"


async def follow_journal(
    store: Store,
    name: str,
    selector: JournalSelector,
    stop: asyncio.Event,
    batch_lines: int = 1000,
    flush_seconds: float = 1.0,
    max_backoff: float = 60.0,
) -> IngestStats:
    """Keep the journal indexed until `stop`: journalctl is restarted (with backoff) when it
    ends or fails, from the last committed cursor."""
    stats = IngestStats()
    delay = 1.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await read_journal(store, name, selector, True, stop, batch_lines, flush_seconds, stats)
        except JournalError as error:
            log.error("%s; trying again in %.0f s", error, delay)
        if stop.is_set():
            break
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, max_backoff)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return stats
