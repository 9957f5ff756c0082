"""Named log sources, configured in one place, so that `whyfailed ingest mx1` (and a chat user's
`/whyfailed user@domain`) needs no paths.

From $WHYFAILED_SOURCES (JSON) or $WHYFAILED_SOURCES_FILE (a .toml, .yaml/.yml or .json file),
also read from .env:

    {"mx1":     {"kind": "file", "path": "/var/log/mail.log"},
     "edge":    {"kind": "ssh", "host": "edge.example.net", "user": "logs", "key": "/etc/whyfailed/id_ed25519",
                 "path": "/var/log/mail.log"},
     "journal": {"kind": "journald", "unit": "postfix@-"},
     "syslog":  {"kind": "syslog", "listen": "0.0.0.0:5514", "protocols": ["udp", "tcp"]}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.sources.files import CHUNK_LINES

log = logging.getLogger("whyfailed.sources")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SourceConfigError(Exception):
    """The sources configuration is wrong: the message says where and how."""


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSource(_Source):
    kind: Literal["file"]
    path: str | list[str] = Field(description="A path or glob (or a list); rotated siblings are read too.")

    @property
    def patterns(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


class SshSource(_Source):
    kind: Literal["ssh"]
    host: str
    user: str
    path: str = Field(description="The log on the remote host (an absolute path).")
    port: int = Field(22, ge=1, le=65535)
    key: str | None = Field(None, description="Private key file; without it, the keys of a running ssh-agent.")
    known_hosts: str | None = Field(None, description="Trusted host keys (default ~/.ssh/known_hosts).")
    connect_timeout: float = Field(10.0, gt=0, le=300)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path on the remote host")
        return value


class JournaldSource(_Source):
    kind: Literal["journald"]
    unit: str | list[str] = Field(default_factory=list, description="systemd units (-u), e.g. 'postfix@-'.")
    identifier: str | list[str] = Field(default_factory=list, description="Syslog identifiers (-t), e.g. 'postfix'.")
    directory: str | None = Field(None, description="A folder of journal files instead of the local journal.")
    since: str | None = Field(None, description="On the first run, start here (journalctl --since), e.g. '-7d'.")
    journalctl: str = "journalctl"


class SyslogSource(_Source):
    kind: Literal["syslog"]
    listen: str = Field("0.0.0.0:5514", description="ADDRESS:PORT ([::]:5514 for IPv6).")
    protocols: list[Literal["udp", "tcp"]] = Field(default_factory=lambda: ["udp", "tcp"], min_length=1)
    queue: int = Field(100_000, ge=100, le=10_000_000, description="Messages held before the oldest are dropped.")

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be ADDRESS:PORT, e.g. 0.0.0.0:5514 or [::]:5514")
        return value

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


Source = Annotated[FileSource | SshSource | JournaldSource | SyslogSource, Field(discriminator="kind")]
_SOURCES = TypeAdapter(dict[Annotated[str, Field(pattern=_NAME)], Source])


class _Env(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WHYFAILED_", env_file=".env", extra="ignore")
    sources: str | None = None
    sources_file: str | None = None


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def parse_sources(data: object, origin: str) -> dict[str, Source]:
    """Validate a mapping of name -> source settings; SourceConfigError lists every problem."""
    try:
        return _SOURCES.validate_python(data)
    except ValidationError as error:
        problems = [_describe(item) for item in error.errors()]
        raise SourceConfigError(f"{origin}: " + "; ".join(problems)) from None


def _describe(item: Mapping) -> str:
    loc = [str(part) for part in item["loc"]]
    if item["type"] == "string_pattern_mismatch" and len(loc) >= 1 and loc[-1] == "[key]":
        return f"source name '{loc[0]}' must be letters, digits, '.', '_' or '-'"
    if item["type"] == "union_tag_invalid":
        return f"source '{loc[0]}': kind must be one of file, ssh, journald, syslog"
    if item["type"] == "union_tag_not_found":
        return f"source '{loc[0]}': say which kind it is (\"kind\": file, ssh, journald or syslog)"
    if not loc:
        return "the configuration must be an object of name -> source settings"
    where = ".".join(loc[2:]) if len(loc) > 2 else ""
    message = str(item["msg"]).removeprefix("Value error, ")
    return f"source '{loc[0]}': {where + ': ' if where else ''}{message}"


def load_sources(environ: Mapping[str, str] | None = None) -> dict[str, Source]:
    """The configured sources ({} when none are), from the environment or the file it names."""
    if environ is None:
        env = _Env()
        inline, named_file = env.sources, env.sources_file
    else:
        inline, named_file = environ.get("WHYFAILED_SOURCES"), environ.get("WHYFAILED_SOURCES_FILE")
    if inline and named_file:
        raise SourceConfigError("set WHYFAILED_SOURCES or WHYFAILED_SOURCES_FILE, not both")
    if named_file:
        path = Path(named_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SourceConfigError(f"WHYFAILED_SOURCES_FILE: cannot read {path} ({error.strerror})") from None
        return parse_sources(_decode(text, path.suffix.lower(), str(path)), str(path))
    if inline:
        return parse_sources(_decode(inline, ".json", "WHYFAILED_SOURCES"), "WHYFAILED_SOURCES")
    return {}


def _decode(text: str, suffix: str, origin: str) -> object:
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as error:  # tomllib and json errors are ValueErrors
        kind = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}.get(suffix, "JSON")
        raise SourceConfigError(f"{origin}: not valid {kind}: {error}") from None


# --- running them ---------------------------------------------------------------------------


def run_sources(
    sources: Mapping[str, Source],
    db_path: str,
    follow: bool = False,
    interval: float = 1.0,
    chunk_lines: int = CHUNK_LINES,
) -> int:
    """Index the named sources (all at once); with `follow`, until SIGTERM or SIGINT.
    Returns the exit status: 0, or 2 when a source could not be read at all."""
    return asyncio.run(_run_all(sources, db_path, follow, interval, chunk_lines))


async def _run_all(sources, db_path: str, follow: bool, interval: float, chunk_lines: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    jobs = [_run_one(name, source, db_path, follow, stop, interval, chunk_lines) for name, source in sources.items()]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    failed = 0
    for name, result in zip(sources, results, strict=True):
        if isinstance(result, BaseException):
            failed += 1
            log.error("%s: %s", name, result)
        else:
            log.info("%s: %s", name, result)
    return 2 if failed else 0


async def follow_source(
    name: str, source: Source, db_path: str, stop: asyncio.Event, chunk_lines: int = CHUNK_LINES
) -> str:
    """Follow one SSH, journald or syslog source until `stop` is set (they save their positions as
    they go); a summary when it ends. The ingest process follows file sources itself."""
    return await _run_one(name, source, db_path, True, stop, 1.0, chunk_lines)


async def _run_one(name: str, source: Source, db_path: str, follow: bool, stop, interval, chunk_lines) -> str:
    from bot.store import Store

    if isinstance(source, FileSource):
        stopped = threading.Event()  # what the file thread sees of `stop`
        mirror = asyncio.ensure_future(_mirror(stop, stopped))
        try:
            return await asyncio.to_thread(_files, name, source, db_path, follow, stopped, interval, chunk_lines)
        finally:
            mirror.cancel()
    if isinstance(source, SyslogSource):
        from bot.sources.syslog_receiver import SyslogReceiver, run_receiver

        host, port = source.address
        receiver = SyslogReceiver(db_path, name, host, port, tuple(source.protocols), queue_size=source.queue)
        if not follow:
            raise SourceConfigError(f"syslog source {name} receives messages: run it with --follow")
        stats = await run_receiver(receiver, stop)
        return f"received {stats.received} messages, indexed {stats.indexed}, dropped {stats.dropped}"
    store = Store(db_path, patience=None if follow else 60.0)  # following, a database that went away is waited for
    if isinstance(source, SshSource):
        from bot.sources.ssh import SshReader, SshTarget, follow_ssh

        target = SshTarget(**source.model_dump(exclude={"kind"}))
        stats = await (follow_ssh(store, name, target, stop) if follow else SshReader(store, name, target).run())
    else:
        from bot.sources.journald import JournalSelector, follow_journal, read_journal

        selector = JournalSelector(
            _as_list(source.unit), _as_list(source.identifier), source.directory, source.since, source.journalctl
        )
        if follow:
            stats = await follow_journal(store, name, selector, stop, batch_lines=chunk_lines)
        else:
            stats = await read_journal(store, name, selector, batch_lines=chunk_lines)
    return f"indexed {stats.lines} new lines; {stats.deliveries} stories updated"


async def _mirror(stop: asyncio.Event, stopped: threading.Event) -> None:
    await stop.wait()
    stopped.set()


def _files(name, source: FileSource, db_path, follow, stopped: threading.Event, interval, chunk_lines) -> str:
    from bot.ingest import ingest_paths
    from bot.sources.files import expand
    from bot.sources.follow import catch_up
    from bot.store import Store

    store = Store(db_path, patience=None if follow else 60.0)  # this thread's own connection
    stats = ingest_paths(store, source.patterns, name, chunk_lines=chunk_lines)
    for problem in stats.skipped:
        log.warning("%s: skipped %s", name, problem)
    if stats.skipped and not stats.files:
        raise OSError("; ".join(stats.skipped))
    while follow and not stopped.wait(interval):
        for pattern in source.patterns:
            for path in expand(pattern)[-1:]:
                try:
                    catch_up(store, path, name, stats)
                except OSError as error:  # unreadable for now: say so, and try again next round
                    log.warning("%s: %s: %s", name, path, error.strerror or error)
    return f"indexed {stats.lines} new lines; {stats.deliveries} stories updated"
