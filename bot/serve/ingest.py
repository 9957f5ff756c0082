"""The `ingest` process: follow every configured named source (WHYFAILED_SOURCES or
WHYFAILED_SOURCES_FILE) into the index, side by side, until SIGTERM.

File sources are followed here, chunk by chunk, so a stop is seen between chunks: the chunk in
hand is written with its position in one transaction, nothing after it is read, and the next
start resumes at the following line. SSH, journald and syslog sources stop on the same signal
and save their positions themselves (bot/sources/).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from bot.logsetup import event
from bot.serve import metrics
from bot.serve.shutdown import Shutdown
from bot.settings import Settings
from bot.sources.config import FileSource, Source, SourceConfigError, follow_source, load_sources

log = logging.getLogger("whyfailed.ingest")


class IngestSetupError(Exception):
    """The ingest process cannot start; the message says what to fix."""


def configured_sources() -> dict[str, Source]:
    try:
        sources = load_sources()
    except SourceConfigError as error:
        raise IngestSetupError(str(error)) from None
    if not sources:
        raise IngestSetupError(
            "no log sources are configured: set WHYFAILED_SOURCES (JSON) or WHYFAILED_SOURCES_FILE "
            '(a .toml/.yaml/.json file), e.g. WHYFAILED_SOURCES=\'{"mx1": {"kind": "file", "path": '
            '"/var/log/mail.log"}}\' (see .env.example).'
        )
    return sources


def lag_bytes(store, patterns: list[str]) -> int:
    """Bytes of the live files not indexed yet: their size past the saved position."""
    from bot.sources.files import expand

    behind = 0
    for pattern in patterns:
        for path in expand(pattern)[-1:]:
            try:
                current = os.stat(path)
            except OSError:
                continue
            saved = store.position(str(path.resolve()))
            done = saved.offset if saved is not None and saved.inode == current.st_ino else 0
            behind += max(0, current.st_size - done)
    return behind


def follow_files(name: str, source: FileSource, db_path: str, stop: threading.Event, interval: float, chunk_lines: int):
    """Index a file source, rotated files first, then keep up with it until `stop` is set."""
    from bot.ingest import IngestStats, ingest_file
    from bot.sources.files import expand
    from bot.sources.follow import catch_up
    from bot.store import Store

    store = Store(db_path)  # this thread's own connection
    store.build_lookup_indexes()  # those a bulk `whyfailed ingest` killed half way left out
    stats = IngestStats()
    counted = {"lines": 0, "deliveries": 0}
    first_round = True
    warned: set[str] = set()  # a missing file is said once, not every round
    while not stop.is_set():
        for pattern in source.patterns:
            # the first round reads rotated files too; later rounds only the live file (catch_up
            # finishes a rotated-away file by its inode)
            for path in expand(pattern) if first_round else expand(pattern)[-1:]:
                if stop.is_set():
                    break
                try:
                    if first_round:
                        ingest_file(store, path, name, stats, chunk_lines=chunk_lines, stop=stop.is_set)
                    else:
                        catch_up(store, path, name, stats, stop=stop.is_set)
                except OSError as error:  # missing or unreadable for now: say so, try again next round
                    metrics.INGEST_ERRORS.labels(name).inc()
                    if (problem := f"{path}: {error.strerror or error}") not in warned:
                        warned.add(problem)
                        log.warning("%s: %s", name, problem)
        first_round = False
        metrics.INGEST_LINES.labels(name).inc(stats.lines - counted["lines"])
        metrics.INGEST_DELIVERIES.labels(name).inc(stats.deliveries - counted["deliveries"])
        counted = {"lines": stats.lines, "deliveries": stats.deliveries}
        metrics.SOURCE_LAG.labels(name).set(lag_bytes(store, source.patterns))
        metrics.INGEST_LAST_READ.labels(name).set(time.time())
        stop.wait(interval)
    return stats


async def _follow(name: str, source: Source, settings: Settings, stop: threading.Event, interval, chunk_lines):
    if isinstance(source, FileSource):
        stats = await asyncio.to_thread(follow_files, name, source, settings.store_target, stop, interval, chunk_lines)
        return {"lines": stats.lines, "deliveries": stats.deliveries}
    stopped = asyncio.Event()  # what the asyncio sources watch

    async def mirror() -> None:
        await asyncio.to_thread(stop.wait)
        stopped.set()

    watcher = asyncio.create_task(mirror())
    try:
        summary = await follow_source(name, source, settings.store_target, stopped, chunk_lines)
    finally:
        watcher.cancel()
    return {"summary": summary}


async def _run_all(sources: dict[str, Source], settings: Settings, stop: threading.Event, interval, chunk_lines):
    jobs = [_follow(name, source, settings, stop, interval, chunk_lines) for name, source in sources.items()]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    failed = []
    for name, result in zip(sources, results, strict=True):
        if isinstance(result, BaseException):
            failed.append(name)
            metrics.INGEST_ERRORS.labels(name).inc()
            log.error("%s: %s", name, result)
        else:
            event(log, "source stopped", source=name, **result)
    return failed


def run_ingest(
    sources: dict[str, Source], settings: Settings, shutdown: Shutdown, interval: float = 1.0, chunk_lines: int = 2000
) -> int:
    """Follow `sources` until SIGTERM; the exit status (2 when a source failed on its own)."""
    event(log, "following", process="ingest", sources=",".join(sources))
    outcome: dict[str, list[str]] = {}

    def work() -> None:
        try:
            outcome["failed"] = asyncio.run(_run_all(sources, settings, shutdown.requested, interval, chunk_lines))
        except Exception:  # a bug, not a source: logged in full, and the process must still end
            log.exception("ingest failed")
            outcome["failed"] = list(sources)
        finally:
            shutdown.request("sources ended")  # every source ended by itself: nothing left to do

    runner = threading.Thread(target=work, name="ingest")
    runner.start()
    shutdown.wait()
    clean = shutdown.join(runner.join, "the chunk in hand")
    failed = outcome.get("failed", [])
    status = shutdown.finished(clean, failed=",".join(failed))
    return 2 if failed and shutdown.signal_name == "sources ended" else status
