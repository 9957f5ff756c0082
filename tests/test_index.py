"""The index: ingest is idempotent and resumable, follows rotation, and `why` answers from it
or, with no index, from the logs themselves."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.ingest import ingest_paths
from bot.sources.follow import follow_paths
from bot.store import Store
from bot.why import parse_duration, why_from_logs, why_from_store

from .conftest import FIXTURES, REPO, wait_for_indexed_offset

sys.path.insert(0, str(REPO / "benchmarks"))
from generate_postfix_log import generate  # noqa: E402

LOG = FIXTURES / "postfix" / "deferred-then-bounced.log"


def _status_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if " status=" in line and " to=<" in line)


def test_ingest_twice_indexes_each_line_once(tmp_path, store_target):
    store = Store(store_target)
    first = ingest_paths(store, [str(LOG)])
    again = ingest_paths(store, [str(LOG)])
    assert first.lines == 10 and again.lines == 0
    assert store.counts()["attempts"] == _status_lines(LOG) == 4
    assert store.counts()["deliveries"] == 2


def _table(store: Store, table: str) -> list[tuple]:
    return sorted(tuple(row.values()) for row in store.backend.query(f"select * from {table}"))


def test_a_story_told_across_chunks_is_indexed_as_if_read_at_once(tmp_path, store_target):
    """A chunk per line: each story is written at its first line, then read back and merged again
    at every later line that tells more of it (the sender comes from an earlier chunk's qmgr
    line). The index must end as one chunk leaves it."""
    logs = [str(LOG), str(FIXTURES / "postfix" / "incoming-rejects.log")]
    whole = Store(tmp_path / "whole.db")
    ingest_paths(whole, logs, source="mx1")
    split = Store(store_target)
    ingest_paths(split, logs, source="mx1", chunk_lines=1)
    for table in ("deliveries", "messages"):
        assert _table(split, table) == _table(whole, table)
    # One difference is known: smtp's own "connect to host: timed out" line joins the status line
    # that follows it only when both are in one chunk (at a 15,000-line boundary, rarely; here,
    # a chunk per line, never). The status line quotes that text, so the story loses no fact.
    assert _table(split, "attempts") == [_without_connect_lines(row) for row in _table(whole, "attempts")]
    assert any("connect to mx.slow" in row[-1] for row in _table(whole, "attempts"))
    assert split.counts()["deliveries"] > 2


def _without_connect_lines(row: tuple) -> tuple:
    evidence = [[line, text] for line, text in json.loads(row[-1]) if ": connect to " not in text.split(" to=<")[0]]
    return (*row[:-1], json.dumps(evidence))


def test_why_from_index_is_case_insensitive_and_tells_the_whole_story(tmp_path, store_target):
    store = Store(store_target)
    ingest_paths(store, [str(LOG)])
    report = why_from_store(store, "OPS@slow.example.NET".lower(), None)
    (story,) = report.deliveries
    assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"]
    assert story.sender == "anna@example.com" and story.queue_id == "7A1B2C3D4E"
    assert story.final.evidence[0].line == 8  # line numbers are the file's


def test_why_finds_a_story_by_its_queue_id_or_message_id(tmp_path, store_target):
    store = Store(store_target)
    ingest_paths(store, [str(FIXTURES / "postfix" / "incoming-rejects.log"), str(LOG)])
    for wanted in (
        "7A1B2C3D4E",
        "<20261127080001.7A1B2C3D4E@mx1.example.com>",
        "20261127080001.7A1B2C3D4E@mx1.example.com",
    ):
        stories = why_from_store(store, wanted, None).deliveries  # the message's two recipients
        assert sorted((s.recipient, s.queue_id, s.status) for s in stories) == [
            ("carl@partner.example", "7A1B2C3D4E", "delivered"),
            ("ops@slow.example.net", "7A1B2C3D4E", "bounced"),
        ], wanted
    assert why_from_store(store, "7a1b2c3d4e", None).deliveries == []  # queue ids are case-sensitive
    assert why_from_store(store, "20261127080001.7A1B2C3D4E@MX1.example.com", None).deliveries == []


def test_lookups_by_queue_id_message_id_and_domain_use_their_indexes(tmp_path):
    db = tmp_path / "plan.db"
    Store(db).close()
    with sqlite3.connect(db) as connection:
        for column in ("queue_id", "message_id"):
            plan = connection.execute(f"explain query plan select id from deliveries where {column} = 'x'").fetchall()
            assert any(f"idx_deliveries_{column}" in row[-1] for row in plan), plan
        # @domain: the failures-only index, for the query Store.find makes
        domain = "select id from deliveries where recipient_domain = ? and status != 'delivered' and source = ? "
        plan = connection.execute(f"explain query plan {domain} order by last_seen desc limit 20", ["x", "s"])
        assert any("idx_deliveries_failed_domain" in row[-1] for row in plan.fetchall())


def test_why_at_domain_lists_only_failures(tmp_path, store_target):
    store = Store(store_target)
    ingest_paths(store, [str(FIXTURES / "postfix" / "incoming-rejects.log"), str(LOG)])
    assert [d.recipient for d in why_from_store(store, "@slow.example.net", None).deliveries] == [
        "ops@slow.example.net"
    ]
    assert why_from_store(store, "@partner.example", None).deliveries == []  # carl's was delivered


def test_why_without_index_matches_the_index(tmp_path, store_target):
    store = Store(store_target)
    ingest_paths(store, [str(LOG)])
    from_index = why_from_store(store, "ops@slow.example.net", None).deliveries[0]
    from_logs = why_from_logs([str(LOG)], "ops@slow.example.net", None).deliveries[0]
    assert [a.status for a in from_logs.attempts] == [a.status for a in from_index.attempts]
    assert from_logs.sender == "anna@example.com"
    # file line numbers; the queue id brings the message's own lines (pickup, cleanup, qmgr, bounce, removed)
    assert [e.line for e in from_logs.evidence()] == [1, 2, 3, 5, 7, 8, 9, 10]


def test_rotated_and_gzipped_files_are_read_oldest_first(tmp_path, store_target):
    lines = list(generate(30, seed=5))
    (tmp_path / "mail.log.2.gz").write_bytes(gzip.compress(("\n".join(lines[:10]) + "\n").encode()))
    (tmp_path / "mail.log.1").write_text("\n".join(lines[10:20]) + "\n")
    (tmp_path / "mail.log").write_text("\n".join(lines[20:]) + "\n")
    store = Store(store_target)
    stats = ingest_paths(store, [str(tmp_path / "mail.log")])
    assert (stats.files, stats.lines) == (3, 30)
    assert store.counts()["deliveries"] == 6


def test_follow_survives_rename_rotation_and_copytruncate(tmp_path, store_target):
    lines = list(generate(60, seed=9))
    live = tmp_path / "mail.log"
    live.write_text("\n".join(lines[:10]) + "\n")
    store = Store(store_target)
    follow_paths(store, [str(live)], "mail", rounds=1)
    with open(live, "a") as handle:  # written after our read, before the rotation
        handle.write("\n".join(lines[10:20]) + "\n")
    live.rename(tmp_path / "mail.log.1")
    live.write_text("\n".join(lines[20:40]) + "\n")
    follow_paths(store, [str(live)], "mail", rounds=1)
    with open(live, "a") as handle:
        handle.write("\n".join(lines[40:50]) + "\n")
    follow_paths(store, [str(live)], "mail", rounds=1)
    live.write_text("")  # copytruncate
    live.write_text("\n".join(lines[50:60]) + "\n")
    follow_paths(store, [str(live)], "mail", rounds=1)
    assert store.counts()["attempts"] == 12  # one status line per 5 lines, each indexed once
    assert store.counts()["deliveries"] == 12


def test_a_half_written_last_line_waits_for_its_newline(tmp_path, store_target):
    lines = list(generate(10, seed=2))
    live = tmp_path / "mail.log"
    live.write_text("\n".join(lines[:9]) + "\n" + lines[9][:40])
    store = Store(store_target)
    assert ingest_paths(store, [str(live)]).lines == 9
    live.write_text("\n".join(lines) + "\n")
    assert ingest_paths(store, [str(live)]).lines == 1
    assert store.counts()["attempts"] == 2


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.slow
def test_kill_9_mid_file_then_restart_indexes_every_line_once(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("\n".join(generate(30000, seed=4)) + "\n")
    db = tmp_path / "i.db"
    command = [sys.executable, "-m", "bot", "ingest", str(log), "--db", str(db), "--chunk-lines", "1000"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    offset = wait_for_indexed_offset(db, log.stat().st_size // 4, process)
    assert process.poll() is None, "ingest finished before it could be killed: make the file bigger"
    workers = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "pool workers outlived a kill -9"
    assert 0 < offset < log.stat().st_size
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as connection:
        attempts = connection.execute("select count(*) from attempts").fetchone()[0]
        distinct = connection.execute("select count(distinct delivery_id || line) from attempts").fetchone()[0]
        final = connection.execute("select offset, lines from positions").fetchone()
    assert attempts == distinct == _status_lines(log) == 6000
    assert final == (log.stat().st_size, 30000)


def test_a_locked_database_gives_a_clear_error_and_keeps_what_was_indexed(tmp_path, run_cli):
    db = tmp_path / "i.db"
    Store(db)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        env_timeout = run_cli("ingest", str(LOG), "--db", str(db), timeout=120)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert env_timeout.returncode == 2
    assert b"cannot be written" in env_timeout.stderr and b"Traceback" not in env_timeout.stderr


def test_why_cli_from_logs_and_bad_input(run_cli):
    done = run_cli("why", "ops@slow.example.net", "--log", str(LOG), "--format", "json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["deliveries"][0]["status"] == "bounced"
    assert run_cli("why", "not an address", "--log", str(LOG)).returncode == 2
    assert run_cli("why", "a@b.example", "--since", "yesterday", "--log", str(LOG)).returncode == 2
    missing = run_cli("why", "a@b.example", "--db", "/nonexistent/x.db")
    assert missing.returncode == 2 and b"whyfailed ingest" in missing.stderr


def test_why_cli_by_queue_id_and_message_id_from_logs_and_from_the_index(run_cli, tmp_path):
    db = tmp_path / "i.db"
    assert run_cli("ingest", str(LOG), "--db", str(db)).returncode == 0
    for where in (["--log", str(LOG)], ["--db", str(db)]):
        for wanted in ("7A1B2C3D4E", "<20261127080001.7A1B2C3D4E@mx1.example.com>"):
            done = run_cli("why", wanted, *where, "--format", "json")
            assert done.returncode == 0, done.stderr
            stories = json.loads(done.stdout)["deliveries"]
            assert sorted((s["recipient"], s["status"]) for s in stories) == [
                ("carl@partner.example", "delivered"),
                ("ops@slow.example.net", "bounced"),
            ], (wanted, where)
        absent = run_cli("why", "7a1b2c3d4e", *where)  # queue ids keep their case
        assert absent.returncode == 0 and absent.stdout.strip() == b"No deliveries with queue id 7a1b2c3d4e were found."
    refused = run_cli("why", "3F2A;rm", "--log", str(LOG))
    assert refused.returncode == 2 and b"not an email address, @domain, Message-ID or queue id" in refused.stderr


def test_durations():
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1w2d") == timedelta(days=9)
    with pytest.raises(ValueError):
        parse_duration("2 fortnights")


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB filesystem (tmpfs), so the database runs out of room for real (an empty index
    with its write-ahead log takes about 0.5 MB: 16 kB pages)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_ingest_clearly_and_a_rerun_with_room_finishes_the_job(tmp_path, small_disk, run_cli):
    log = tmp_path / "big.log"
    log.write_text("\n".join(generate(20000, seed=3)) + "\n")
    db = small_disk / "i.db"
    full = run_cli("ingest", str(log), "--db", str(db), "--chunk-lines", "500")
    assert full.returncode == 2
    assert b"database or disk is full" in full.stderr and b"Traceback" not in full.stderr
    assert b"resumes from there" in full.stderr
    # what was committed before the disk filled is whole: the position and the attempts agree
    with sqlite3.connect(db) as connection:
        offset, lines = connection.execute("select offset, lines from positions").fetchone()
        attempts = connection.execute("select count(*) from attempts").fetchone()[0]
    assert 0 < lines < 20000
    head = log.read_bytes()[:offset].decode()
    assert attempts == sum(1 for line in head.splitlines() if " status=" in line and " to=<" in line)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    done = run_cli("ingest", str(log), "--db", str(db), "--chunk-lines", "500")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as connection:
        attempts, distinct = connection.execute(
            "select count(*), count(distinct delivery_id || '|' || line) from attempts"
        ).fetchone()
        final = connection.execute("select offset, lines from positions").fetchone()
    assert attempts == distinct == _status_lines(log)
    assert final == (log.stat().st_size, 20000)


# Root reads any file; without these capabilities it is held to the permission bits like anyone.
NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def test_missing_unreadable_and_non_files_are_skipped_by_name_and_the_rest_indexed(tmp_path):
    import shutil

    readable = tmp_path / "mail.log"
    readable.write_text(LOG.read_text())
    secret = tmp_path / "secret.log"
    secret.write_text(LOG.read_text())
    secret.chmod(0)
    (tmp_path / "folder.log").mkdir()
    db = tmp_path / "i.db"
    args = ["ingest", str(readable), str(tmp_path / "gone.log"), str(tmp_path / "folder.log"), str(secret)]
    prefix = NO_DAC if os.geteuid() == 0 and shutil.which("setpriv") else []
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "bot", *args, "--db", str(db)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr  # unreadable input, though the readable file was indexed
    assert f"warning: skipped {tmp_path / 'gone.log'}: no such file" in done.stderr
    assert f"warning: skipped {tmp_path / 'folder.log'}: Is a directory" in done.stderr
    if prefix or os.geteuid() != 0:
        assert f"warning: skipped {secret}: permission denied" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Indexed 10 new lines" in done.stdout
    (story,) = why_from_store(Store(db), "ops@slow.example.net", None).deliveries
    assert story.status == "bounced"
    only_bad = subprocess.run(
        [sys.executable, "-m", "bot", "ingest", str(tmp_path / "gone.log"), "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert only_bad.returncode == 2 and "Traceback" not in only_bad.stderr


def test_follow_waits_for_a_vanished_file_and_reads_it_when_it_comes_back(tmp_path):
    lines = list(generate(30, seed=5))
    live = tmp_path / "mail.log"
    live.write_text("\n".join(lines[:10]) + "\n")
    store = Store(tmp_path / "i.db")
    follow_paths(store, [str(live)], "mail", rounds=1)
    live.unlink()  # the log is gone (a botched rotation, an unmounted disk)
    stats = follow_paths(store, [str(live)], "mail", interval=0.05, rounds=3)
    assert stats.lines == 0
    live.write_text("\n".join(lines[10:30]) + "\n")  # a new file: read from its first line
    follow_paths(store, [str(live)], "mail", rounds=1)
    assert store.counts()["attempts"] == 6  # one status line per 5 lines, each indexed once


def test_why_source_narrows_the_index_and_names_a_configured_source_to_scan(tmp_path, run_cli):
    db = tmp_path / "i.db"
    for name in ("mx1", "mx2"):  # one log file per server (positions are kept per file)
        copy = tmp_path / f"{name}.log"
        copy.write_text(LOG.read_text())
        done = run_cli("ingest", str(copy), "--source", name, "--db", str(db))
        assert done.returncode == 0, done.stderr
    everywhere = json.loads(run_cli("why", "ops@slow.example.net", "--db", str(db), "--format", "json").stdout)
    only_mx2 = json.loads(
        run_cli("why", "ops@slow.example.net", "--db", str(db), "--source", "mx2", "--format", "json").stdout
    )
    assert len(everywhere["deliveries"]) == 2 and len(only_mx2["deliveries"]) == 1
    nowhere = run_cli("why", "ops@slow.example.net", "--db", str(db), "--source", "mx9")
    assert nowhere.returncode == 0 and b"No deliveries" in nowhere.stdout
    # no index: a configured file source is scanned where it lives, by its name alone
    sources = {"edge": {"kind": "file", "path": str(LOG)}}
    env = {"WHYFAILED_SOURCES": json.dumps(sources)}
    scanned = run_cli(
        "why", "ops@slow.example.net", "--db", str(tmp_path / "none.db"), "--source", "edge", "-f", "json", env=env
    )
    assert scanned.returncode == 0, scanned.stderr
    assert json.loads(scanned.stdout)["deliveries"][0]["diagnosis"]["id"] == "mailbox-full"
    unknown = run_cli("why", "a@b.example", "--db", str(tmp_path / "none.db"), "--source", "nope", env=env)
    assert unknown.returncode == 2 and b"nope is not a configured source" in unknown.stderr
