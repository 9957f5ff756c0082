"""Log sources beyond local files: journald (real journalctl over real journal files), SSH (a
real OpenSSH server on loopback), the syslog receiver (fed by util-linux `logger`), and the
named-source configuration behind `whyfailed ingest NAME`."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.parse.syslog import parse_syslog_header
from bot.sources.config import FileSource, SourceConfigError, SshSource, load_sources, parse_sources
from bot.sources.journald import JournalError, JournalSelector, follow_journal, read_journal, saved_cursor
from bot.sources.ssh import SshReader, SshSourceError, SshTarget, follow_ssh
from bot.sources.syslog_receiver import SyslogReceiver, normalise_message
from bot.store import Store
from bot.why import why_from_store

from .conftest import FIXTURES, REPO

STORY = FIXTURES / "postfix" / "deferred-then-bounced.log"
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
SSHD = "/usr/sbin/sshd"
DEADLINE = 20.0  # every wait in this file is bounded by this many seconds


def _cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WHYFAILED_")}
    environ |= {"PYTHONUTF8": "1", "COLUMNS": "120", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=environ
    )


def _why(db: Path, address: str):
    return why_from_store(Store(db), address, None).deliveries


def _wait_for(check, what: str, seconds: float = DEADLINE) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


async def _async_wait_for(check, what: str, seconds: float = DEADLINE) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _attempts(db: Path) -> int:
    return Store(db).counts()["attempts"]


# --- configuration --------------------------------------------------------------------------


def test_sources_config_from_json_toml_and_yaml(tmp_path):
    data = {
        "mx1": {"kind": "file", "path": "/var/log/mail.log"},
        "edge": {"kind": "ssh", "host": "edge.example", "user": "logs", "key": "/k", "path": "/var/log/mail.log"},
        "journal": {"kind": "journald", "unit": "postfix@-"},
        "syslog": {"kind": "syslog", "listen": "0.0.0.0:5514", "protocols": ["udp", "tcp"]},
    }
    from_json = load_sources({"WHYFAILED_SOURCES": json.dumps(data)})
    assert set(from_json) == {"mx1", "edge", "journal", "syslog"}
    assert from_json["edge"].port == 22 and from_json["edge"].known_hosts is None
    assert from_json["syslog"].address == ("0.0.0.0", 5514)
    toml = tmp_path / "sources.toml"
    toml.write_text('[mx1]\nkind = "file"\npath = ["/var/log/mail.log", "/var/log/exim4/mainlog"]\n')
    assert load_sources({"WHYFAILED_SOURCES_FILE": str(toml)})["mx1"].patterns == [
        "/var/log/mail.log",
        "/var/log/exim4/mainlog",
    ]
    yaml_file = tmp_path / "sources.yaml"
    yaml_file.write_text("edge:\n  kind: ssh\n  host: edge.example\n  user: logs\n  path: /var/log/mail.log\n")
    assert isinstance(load_sources({"WHYFAILED_SOURCES_FILE": str(yaml_file)})["edge"], SshSource)
    assert load_sources({}) == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"edge": {"kind": "ssh", "user": "u", "path": "/x"}}, "source 'edge': host: Field required"),
        ({"edge": {"kind": "ssh", "host": "h", "user": "u", "path": "x"}}, "path: must be an absolute path"),
        ({"x": {"kind": "smtp"}}, "kind must be one of file, ssh, journald, syslog"),
        ({"x": {"path": "/y"}}, "say which kind it is"),
        ({"bad name": {"kind": "file", "path": "/y"}}, "source name 'bad name'"),
        ({"s": {"kind": "syslog", "listen": "5514"}}, "listen: must be ADDRESS:PORT"),
        ({"f": {"kind": "file", "path": "/y", "paht": "/z"}}, "paht: Extra inputs are not permitted"),
        (["not", "a", "mapping"], "must be an object of name -> source settings"),
    ],
)
def test_sources_config_errors_say_where_and_what(data, message):
    with pytest.raises(SourceConfigError, match="WHYFAILED_SOURCES: .*" + message.replace("(", r"\(")):
        parse_sources(data, "WHYFAILED_SOURCES")


def test_sources_config_file_problems_are_clear(tmp_path):
    broken = tmp_path / "s.toml"
    broken.write_text("[mx1\n")
    with pytest.raises(SourceConfigError, match="not valid TOML"):
        load_sources({"WHYFAILED_SOURCES_FILE": str(broken)})
    with pytest.raises(SourceConfigError, match="cannot read"):
        load_sources({"WHYFAILED_SOURCES_FILE": str(tmp_path / "missing.yaml")})
    with pytest.raises(SourceConfigError, match="not both"):
        load_sources({"WHYFAILED_SOURCES": "{}", "WHYFAILED_SOURCES_FILE": str(broken)})


def test_ingest_by_configured_name_indexes_under_that_name(tmp_path):
    db = tmp_path / "i.db"
    env = {"WHYFAILED_SOURCES": json.dumps({"mx1": {"kind": "file", "path": str(STORY)}})}
    done = _cli("ingest", "mx1", "--db", str(db), env=env)
    assert done.returncode == 0, done.stderr
    assert "mx1: indexed 10 new lines" in done.stderr
    (story,) = _why(db, "ops@slow.example.net")
    assert story.status == "bounced"
    with sqlite3.connect(db) as connection:  # a plain SQLite file, readable without us
        assert {source for (source,) in connection.execute("select source from deliveries")} == {"mx1"}
    again = _cli("ingest", "mx1", "--db", str(db), env=env)
    assert "mx1: indexed 0 new lines" in again.stderr


def test_ingest_with_a_broken_config_says_so(tmp_path):
    env = {"WHYFAILED_SOURCES": '{"mx1": {"kind": "file"}}'}
    done = _cli("ingest", "mx1", "--db", str(tmp_path / "i.db"), env=env)
    assert done.returncode == 2
    assert "error: WHYFAILED_SOURCES: source 'mx1': path: Field required" in done.stderr
    # a path that exists is still indexed, with a warning about the configuration
    done = _cli("ingest", str(STORY), "--db", str(tmp_path / "i.db"), env=env)
    assert done.returncode == 0 and "warning: WHYFAILED_SOURCES" in done.stderr


# --- journald -------------------------------------------------------------------------------


def _export_entry(line: str, seq: int, unit: str = "postfix@-.service") -> str:
    """A journal export-format entry for one syslog line (what journald would have stored)."""
    header, message = parse_syslog_header(line)
    fields = {
        "__REALTIME_TIMESTAMP": str(1_764_230_401_000_000 + seq * 1_000_000),
        "__MONOTONIC_TIMESTAMP": str(1000 + seq),
        "_BOOT_ID": "0123456789abcdef0123456789abcdef",
        "_HOSTNAME": header["host"],
        "SYSLOG_IDENTIFIER": header["program"],
        "_PID": str(header["pid"]),
        "_SYSTEMD_UNIT": unit,
        "MESSAGE": message,
    }
    return "".join(f"{k}={v}\n" for k, v in fields.items()) + "\n"


def _append_journal(journal: Path, entries: list[str]) -> None:
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={journal}", "-"],
        input="".join(entries),
        text=True,
        check=True,
        capture_output=True,
        timeout=30,
    )


needs_journal = pytest.mark.skipif(
    not (shutil.which("journalctl") and os.access(JOURNAL_REMOTE, os.X_OK)),
    reason="journalctl and systemd-journal-remote (scripts/install-test-servers.sh) are needed",
)


@needs_journal
@pytest.mark.slow
def test_journald_source_indexes_a_unit_and_resumes_after_its_cursor(tmp_path):
    lines = STORY.read_text().splitlines()
    folder = tmp_path / "journal"
    folder.mkdir()
    journal = folder / "remote.journal"
    noise = _export_entry("Nov 27 08:00:02 mx1 cron[77]: (root) CMD (true)", 99, unit="cron.service")
    _append_journal(journal, [_export_entry(line, n) for n, line in enumerate(lines[:6])] + [noise])
    db = tmp_path / "i.db"
    sources = {"journal": {"kind": "journald", "unit": "postfix@-", "directory": str(folder)}}
    env = {"WHYFAILED_SOURCES": json.dumps(sources)}

    first = _cli("ingest", "journal", "--db", str(db), env=env)
    assert first.returncode == 0, first.stderr
    assert "journal: indexed 6 new lines" in first.stderr  # the cron entry is another unit's
    (story,) = _why(db, "ops@slow.example.net")
    assert story.status == "deferred"
    # the smtp client's own "connect to" line, then the status line that quotes it
    connect, status = story.attempts[0].evidence
    assert connect.text.startswith("2025-11-27T08:00:04+00:00 mx1 postfix/smtp[1310]: connect to mx.slow")
    assert status.text.startswith("2025-11-27T08:00:05+00:00 mx1 postfix/smtp[1310]: 7A1B2C3D4E: to=<ops@")

    _append_journal(journal, [_export_entry(line, n) for n, line in enumerate(lines[6:], start=6)])
    second = _cli("ingest", "journal", "--db", str(db), env=env)
    assert "journal: indexed 4 new lines" in second.stderr
    (story,) = _why(db, "ops@slow.example.net")
    assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"]
    assert story.diagnosis.id == "mailbox-full"
    count, cursor = saved_cursor(Store(db), "journald:journal")
    assert count == 10 and cursor.startswith("s=") and ";i=b;" in cursor  # entry 11 (hex): the noise was 7
    assert "indexed 0 new lines" in _cli("ingest", "journal", "--db", str(db), env=env).stderr


@needs_journal
@pytest.mark.slow
def test_journald_follow_picks_up_new_entries(tmp_path):
    lines = STORY.read_text().splitlines()
    folder = tmp_path / "journal"
    folder.mkdir()
    journal = folder / "live.journal"
    _append_journal(journal, [_export_entry(line, n) for n, line in enumerate(lines[:3])])
    store = Store(tmp_path / "i.db")
    selector = JournalSelector(identifiers=["postfix/smtp", "postfix/qmgr", "postfix/pickup"], directory=str(folder))

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(follow_journal(store, "live", selector, stop, flush_seconds=0.2))
        await _async_wait_for(lambda: saved_cursor(store, "journald:live")[0] == 2, "the first entries")
        await asyncio.to_thread(
            _append_journal, journal, [_export_entry(line, n) for n, line in enumerate(lines[3:], start=3)]
        )
        await _async_wait_for(lambda: store.counts()["attempts"] == 4, "the appended entries")
        stop.set()
        return await asyncio.wait_for(task, DEADLINE)

    stats = asyncio.run(scenario())
    assert stats.lines == 8  # pickup, qmgr x2, smtp x5: cleanup and bounce are other identifiers
    (story,) = why_from_store(store, "ops@slow.example.net", None).deliveries
    assert story.status == "bounced"


def test_journald_without_journalctl_is_a_clear_error(tmp_path):
    selector = JournalSelector(units=["postfix@-"], journalctl=str(tmp_path / "no-journalctl"))
    with pytest.raises(JournalError, match="no-journalctl not found"):
        asyncio.run(read_journal(Store(tmp_path / "i.db"), "j", selector))


def test_journald_reader_reads_a_program_that_writes_journal_json(tmp_path):
    """The reader's path for any program that prints journalctl-shaped JSON (what a remote
    journalctl, or `ssh host journalctl -o json`, would print)."""
    fake = tmp_path / "fake-journalctl"
    record = {
        "__CURSOR": "s=abc;i=1",
        "__REALTIME_TIMESTAMP": "1764324902000000",
        "_HOSTNAME": "mx1",
        "SYSLOG_IDENTIFIER": "postfix/smtp",
        "SYSLOG_PID": "9",
        "MESSAGE": "1A2B3C: to=<x@y.example>, relay=none, delay=1, dsn=4.4.1, status=deferred (connect timed out)",
    }
    fake.write_text(
        f"#!{sys.executable}\nimport sys\nprint({json.dumps(json.dumps(record))})\nprint('-- No entries --')\n"
    )
    fake.chmod(0o755)
    store = Store(tmp_path / "i.db")
    stats = asyncio.run(read_journal(store, "j", JournalSelector(journalctl=str(fake))))
    assert stats.lines == 1
    assert saved_cursor(store, "journald:j") == (1, "s=abc;i=1")
    (story,) = why_from_store(store, "x@y.example", None).deliveries
    assert story.status == "deferred" and story.attempts[0].evidence[0].text.startswith("2025-11-28T10:15:02")


@needs_journal
@pytest.mark.slow
def test_journald_kill_9_mid_journal_then_restart_indexes_each_entry_once(tmp_path):
    """ingest is killed (-9) part way through a journal, in chunks of 2 entries; the restart
    resumes after the cursor of the last committed chunk, and no entry is indexed twice."""
    folder = tmp_path / "journal"
    folder.mkdir()
    total = 3000
    entries = [
        _export_entry(
            f"Nov 27 08:00:02 mx1 postfix/smtp[1310]: 1A{n:05X}: to=<u{n}@y.example>, relay=none, delay=1, "
            f"dsn=4.4.1, status=deferred (connect to y.example[192.0.2.1]:25: Connection timed out, try {n})",
            n,
        )
        for n in range(total)
    ]
    _append_journal(folder / "big.journal", entries)
    db = tmp_path / "i.db"
    env = {**os.environ, "WHYFAILED_SOURCES": json.dumps({"j": {"kind": "journald", "directory": str(folder)}})}
    command = [sys.executable, "-m", "bot", "ingest", "j", "--db", str(db), "--chunk-lines", "2"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    indexed = 0
    deadline = time.monotonic() + DEADLINE * 4
    while time.monotonic() < deadline and process.poll() is None and indexed < total // 10:
        time.sleep(0.1)
        with contextlib.suppress(sqlite3.Error), sqlite3.connect(db, timeout=1) as connection:
            row = connection.execute("select lines from positions where path = 'journald:j'").fetchone()
            indexed = row[0] if row else 0
    assert process.poll() is None, "ingest finished before it could be killed: make the journal bigger"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = saved_cursor(Store(db), "journald:j")[0]
    assert 0 < killed_at < total

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    store = Store(db)
    assert saved_cursor(store, "journald:j")[0] == total
    with sqlite3.connect(db) as connection:
        attempts, distinct = connection.execute("select count(*), count(distinct delivery_id) from attempts").fetchone()
    assert attempts == distinct == total  # one deferral per recipient, none twice, none lost
    (story,) = why_from_store(store, f"u{total - 1}@y.example", None).deliveries
    assert story.status == "deferred"


# --- SSH ------------------------------------------------------------------------------------


class Sshd:
    def __init__(self, folder: Path, port: int, process: subprocess.Popen, user_key: Path, known_hosts: Path):
        self.folder, self.port, self.process = folder, port, process
        self.user_key, self.known_hosts = user_key, known_hosts

    def target(self, path: Path, **changes) -> SshTarget:
        settings = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": getpass.getuser(),
            "key": str(self.user_key),
            "known_hosts": str(self.known_hosts),
            "path": str(path),
            "connect_timeout": 10.0,
        }
        return SshTarget(**(settings | changes))


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1, with a throwaway host key and user key."""
    if not (os.access(SSHD, os.X_OK) and shutil.which("ssh-keygen")):
        pytest.skip("openssh-server is not installed (scripts/install-test-servers.sh installs it)")
    folder = tmp_path_factory.mktemp("sshd")
    _keygen(folder / "host_key")
    _keygen(folder / "user_key")
    (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
    port = _free_port()
    host_key = (folder / "host_key.pub").read_text().split()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "LogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    log = open(folder / "sshd.log", "wb")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: process.poll() is not None or _listening(port), "sshd to listen")
        if process.poll() is not None:
            pytest.fail(f"sshd did not start: {(folder / 'sshd.log').read_text()}")
        yield Sshd(folder, port, process, folder / "user_key", known_hosts)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_ssh_source_ingests_a_remote_log_and_why_finds_the_story(sshd, tmp_path):
    remote = sshd.folder / "remote-mail.log"
    lines = STORY.read_text().splitlines(keepends=True)
    remote.write_text("".join(lines[:7]))
    db = tmp_path / "i.db"
    target = sshd.target(remote)
    edge = {k: v for k, v in target.__dict__.items()} | {"kind": "ssh"}
    env = {"WHYFAILED_SOURCES": json.dumps({"edge": edge})}

    first = _cli("ingest", "edge", "--db", str(db), env=env)
    assert first.returncode == 0, first.stderr
    assert "edge: indexed 7 new lines" in first.stderr
    with remote.open("a") as handle:
        handle.write("".join(lines[7:]))
    second = _cli("ingest", "edge", "--db", str(db), env=env)
    assert "edge: indexed 3 new lines" in second.stderr  # resumed at the byte offset reached

    found = _cli("why", "ops@slow.example.net", "--db", str(db), "--format", "json")
    (story,) = json.loads(found.stdout)["deliveries"]
    assert story["status"] == "bounced" and story["diagnosis"]["id"] == "mailbox-full"
    assert [a["status"] for a in story["attempts"]] == ["deferred", "deferred", "bounced"]
    position = Store(db).position(target.key_name)
    assert position.offset == remote.stat().st_size and position.lines == 10
    assert position.inode == remote.stat().st_ino


@pytest.mark.slow
def test_ssh_follow_reads_appended_lines_across_a_rotation(sshd, tmp_path):
    remote = sshd.folder / "live-mail.log"
    lines = STORY.read_text().splitlines(keepends=True)
    remote.write_text("".join(lines[:3]))
    store = Store(tmp_path / "i.db")
    target = sshd.target(remote)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(follow_ssh(store, "live", target, stop, flush_seconds=0.2))
        lines_indexed = lambda: getattr(store.position(target.key_name), "lines", 0)  # noqa: E731
        await _async_wait_for(lambda: lines_indexed() == 3, "the first lines")
        with remote.open("a") as handle:
            handle.write("".join(lines[3:6]))
        await _async_wait_for(lambda: lines_indexed() == 6, "the appended lines")
        remote.rename(remote.with_name(remote.name + ".1"))  # rotation: rename, then a new file
        remote.write_text("".join(lines[6:]))
        await _async_wait_for(lambda: store.counts()["attempts"] == 4, "the new file's lines")
        stop.set()
        return await asyncio.wait_for(task, DEADLINE)

    stats = asyncio.run(scenario())
    assert stats.lines == 10
    (story,) = why_from_store(store, "ops@slow.example.net", None).deliveries
    assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"]
    assert store.position(target.key_name).inode == remote.stat().st_ino
    assert store.position(target.key_name).lines == 4


@pytest.mark.slow
def test_ssh_follow_reconnects_after_the_connection_drops(sshd, tmp_path):
    remote = sshd.folder / "dropped-mail.log"
    lines = STORY.read_text().splitlines(keepends=True)
    remote.write_text("".join(lines[:5]))
    store = Store(tmp_path / "i.db")
    target = sshd.target(remote)
    lines_indexed = lambda: getattr(store.position(target.key_name), "lines", 0)  # noqa: E731

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(follow_ssh(store, "edge", target, stop, max_backoff=0.5, flush_seconds=0.2))
        await _async_wait_for(lambda: lines_indexed() == 5, "the first lines")
        sessions = subprocess.run(["pgrep", "-P", str(sshd.process.pid)], capture_output=True, text=True).stdout
        for pid in sessions.split():  # sshd's per-connection processes: the connection drops
            os.kill(int(pid), signal.SIGKILL)
        with remote.open("a") as handle:
            handle.write("".join(lines[5:]))
        await _async_wait_for(lambda: lines_indexed() == 10, "the lines written while disconnected")
        stop.set()
        return await asyncio.wait_for(task, DEADLINE)

    assert asyncio.run(scenario()).lines == 10  # each line once, across the reconnection
    (story,) = why_from_store(store, "ops@slow.example.net", None).deliveries
    assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"]


@pytest.mark.slow
def test_ssh_refuses_an_unknown_host_key_by_default(sshd, tmp_path):
    remote = sshd.folder / "mail.log"
    remote.write_text(STORY.read_text())
    other = tmp_path / "other_key"
    _keygen(other)
    wrong = tmp_path / "known_hosts"
    kind, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    store = Store(tmp_path / "i.db")
    with pytest.raises(SshSourceError, match="host key is not trusted"):
        asyncio.run(SshReader(store, "edge", sshd.target(remote, known_hosts=str(wrong))).run())
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(SshSourceError, match="host key is not trusted"):
        asyncio.run(SshReader(store, "edge", sshd.target(remote, known_hosts=str(empty))).run())
    with pytest.raises(SshSourceError, match="known_hosts file .* does not exist. whyfailed checks host keys"):
        asyncio.run(SshReader(store, "edge", sshd.target(remote, known_hosts=str(tmp_path / "none"))).run())
    assert store.counts()["attempts"] == 0


@pytest.mark.slow
def test_ssh_wrong_port_is_a_clear_error_and_follow_keeps_trying(sshd, tmp_path, caplog):
    closed = _free_port()
    target = sshd.target(sshd.folder / "mail.log", port=closed)
    edge = target.__dict__ | {"kind": "ssh"}
    done = _cli("ingest", "edge", "--db", str(tmp_path / "i.db"), env={"WHYFAILED_SOURCES": json.dumps({"edge": edge})})
    assert done.returncode == 2
    assert f"127.0.0.1:{closed} refused the connection: is sshd running there and listening on port" in done.stderr
    assert "Traceback" not in done.stderr

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(follow_ssh(Store(tmp_path / "i.db"), "edge", target, stop, max_backoff=0.5))
        await asyncio.sleep(2.5)
        alive = not task.done()
        stop.set()
        await asyncio.wait_for(task, DEADLINE)
        return alive

    with caplog.at_level(logging.ERROR, logger="whyfailed.sources.ssh"):
        assert asyncio.run(scenario())  # still running after several refusals
    refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refusals) >= 2 and "trying again" in refusals[0].getMessage()


@pytest.mark.slow
def test_ssh_wrong_user_key_is_refused_clearly(sshd, tmp_path):
    stranger = tmp_path / "stranger"
    _keygen(stranger)
    with pytest.raises(SshSourceError, match="was refused with key .*stranger: is its public key"):
        asyncio.run(SshReader(Store(tmp_path / "i.db"), "e", sshd.target(sshd.folder / "x", key=str(stranger))).run())


# --- syslog receiver ------------------------------------------------------------------------

needs_logger = pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")


def test_normalise_message_reads_both_rfcs():
    assert (
        normalise_message(b"<22>1 2026-11-28T10:15:02Z mx1 postfix/smtp 2211 - - 7A: to=<a@b>\n", "10.0.0.9")
        == "2026-11-28T10:15:02Z mx1 postfix/smtp[2211]: 7A: to=<a@b>"
    )
    sd = b'<22>1 2026-11-28T10:15:02Z mx1 postfix/smtp - ID47 [x@1 a="q\\"]" b="2"][y@1] \xef\xbb\xbf7A: ok'
    assert normalise_message(sd, "10.0.0.9") == "2026-11-28T10:15:02Z mx1 postfix/smtp: 7A: ok"
    assert normalise_message(b"<22>1 - - postfix 1 - - hi", "10.0.0.9").endswith(" 10.0.0.9 postfix[1]: hi")
    assert (
        normalise_message(b"<13>Nov 28 10:15:02 mx1 postfix/smtp[1]: hi", "h")
        == "Nov 28 10:15:02 mx1 postfix/smtp[1]: hi"
    )
    assert normalise_message(b"<13>Nov  8 10:15:02 postfix/smtp[1]: hi", "10.0.0.9") == (
        "Nov  8 10:15:02 10.0.0.9 postfix/smtp[1]: hi"
    )
    assert normalise_message(b"<13>\n", "h") is None


async def _logger(port: int, *args: str, stdin: bytes | None = None) -> None:
    process = await asyncio.create_subprocess_exec(
        "logger", "--server", "127.0.0.1", "--port", str(port), *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await asyncio.wait_for(process.communicate(stdin), DEADLINE)
    assert process.returncode == 0, err


async def _send_story(port: int, protocol: str, framing: list[str], recipient: str, queue_id: str) -> None:
    """The Postfix story of STORY, for another recipient, sent line by line as its programs would."""
    for line in STORY.read_text().splitlines():
        header, message = parse_syslog_header(line)
        message = message.replace("ops@slow.example.net", recipient).replace("7A1B2C3D4E", queue_id)
        tag = ["-t", header["program"], f"--id={header['pid']}"]
        await _logger(port, f"--{protocol}", *framing, *tag, "--", message)


@needs_logger
@pytest.mark.slow
def test_syslog_receiver_indexes_what_logger_sends_over_udp_and_tcp(tmp_path):
    db = tmp_path / "i.db"
    cases = {
        "udp-3164@example.org": ("udp", ["--rfc3164"], "1A0000A001"),
        "udp-5424@example.org": ("udp", ["--rfc5424"], "1A0000A002"),
        "tcp-3164@example.org": ("tcp", ["--rfc3164"], "1A0000A003"),
        "tcp-5424@example.org": ("tcp", ["--rfc5424"], "1A0000A004"),
        "tcp-octets@example.org": ("tcp", ["--rfc5424", "--octet-count"], "1A0000A005"),
    }

    async def scenario() -> SyslogReceiver:
        receiver = SyslogReceiver(str(db), "relay", "127.0.0.1", 0, flush_seconds=0.2)
        async with receiver:
            for recipient, (protocol, framing, queue_id) in cases.items():
                port = receiver.udp_port if protocol == "udp" else receiver.tcp_port
                await _send_story(port, protocol, framing, recipient, queue_id)
            await _async_wait_for(lambda: receiver.stats.indexed == 50, "50 messages indexed")
        return receiver

    receiver = asyncio.run(scenario())
    assert receiver.stats.dropped == 0 and receiver.stats.received == 50
    for recipient in cases:
        (story,) = _why(db, recipient)
        assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"], recipient
        assert story.diagnosis.id == "mailbox-full"
        assert story.sender == "anna@example.com"
    assert Store(db).position("syslog:relay").lines == 50


@needs_logger
@pytest.mark.slow
def test_syslog_flood_drops_the_oldest_and_counts_them(tmp_path):
    db = tmp_path / "i.db"
    lines = [f"flood message {n}" for n in range(1000)]

    async def scenario() -> SyslogReceiver:
        # a writer that does not flush before stop(): the queue of 100 takes the whole flood
        receiver = SyslogReceiver(str(db), "flood", "127.0.0.1", 0, ("tcp",), queue_size=100, flush_seconds=600)
        receiver.batch_lines = 10**6
        async with receiver:
            flood = ("\n".join(lines) + "\n").encode()
            await _logger(receiver.tcp_port, "--tcp", "--rfc5424", "-t", "postfix/smtp", stdin=flood)
            await _async_wait_for(lambda: receiver.stats.received == 1000, "1000 messages received")
            assert len(receiver.queue) == 100
            assert receiver.queue[0].endswith("flood message 900") and receiver.queue[-1].endswith("flood message 999")
        return receiver

    receiver = asyncio.run(scenario())
    assert (receiver.stats.received, receiver.stats.dropped, receiver.stats.indexed) == (1000, 900, 100)
    assert Store(db).position("syslog:flood").lines == 100


@needs_logger
@pytest.mark.slow
def test_syslog_source_through_the_cli_until_sigterm(tmp_path):
    db = tmp_path / "i.db"
    port = _free_port()
    env = {"WHYFAILED_SOURCES": json.dumps({"relay": {"kind": "syslog", "listen": f"127.0.0.1:{port}"}})}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WHYFAILED_")} | env
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "ingest", "relay", "--follow", "--db", str(db)],
        cwd=REPO,
        env=environ,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _listening(port) or process.poll() is not None, "the receiver to listen")
        asyncio.run(_send_story(port, "tcp", ["--rfc5424"], "ops@slow.example.net", "7A1B2C3D4E"))
        _wait_for(lambda: db.exists() and _attempts(db) == 4, "the story to be indexed")
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, err
    assert "relay: received 10 messages, indexed 10, dropped 0" in err
    (story,) = _why(db, "ops@slow.example.net")
    assert story.status == "bounced"


def test_syslog_source_needs_follow(tmp_path):
    env = {"WHYFAILED_SOURCES": json.dumps({"relay": {"kind": "syslog", "listen": "127.0.0.1:5514"}})}
    done = _cli("ingest", "relay", "--db", str(tmp_path / "i.db"), env=env)
    assert done.returncode == 2 and "run it with --follow" in done.stderr


def test_file_source_config_model_lists_patterns():
    assert FileSource(kind="file", path="/a").patterns == ["/a"]
