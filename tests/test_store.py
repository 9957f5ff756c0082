"""The store on both backends: the current schema and the upgrades from schemas 1, 2 and 4, audit and feedback rows,
the /whyfailed lookup's choice between the index and the logs, and clear one-line errors."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from bot.conversation import Context, Conversation, store_audit
from bot.ingest import ingest_paths
from bot.settings import Settings
from bot.store import SCHEMA_VERSION, Store, StoreError
from bot.store_backends import open_backend, redact_url
from bot.store_schema import DIAGNOSIS_COLUMNS, STEPS
from bot.why import why_from_store

from .conftest import FIXTURES
from .pg_server import PASSWORD, free_port

LOG = FIXTURES / "postfix" / "deferred-then-bounced.log"
V1 = FIXTURES / "store" / "v1.sql"
CONSOLE = Context("console", "me")


def test_a_new_store_is_at_the_current_schema(store_target):
    store = Store(store_target)
    assert store.schema_version == SCHEMA_VERSION == 5
    assert store.counts() == {"deliveries": 0, "attempts": 0, "messages": 0, "positions": 0}
    # stories are diagnosed when read: a new index has no column for a diagnosis
    assert not set(DIAGNOSIS_COLUMNS) & store.backend.columns("deliveries") or not store.backend.drops_columns
    store.check_writable()
    assert store.schema_version == SCHEMA_VERSION
    assert store.counts()["positions"] == 0  # the trial write was rolled back


def test_an_sqlite_index_is_set_up_for_a_writer_of_large_indexes(tmp_path):
    from bot.store_backends import CACHE_BYTES, PAGE_SIZE, WAL_CHECKPOINT_PAGES

    store = Store(tmp_path / "new.db")
    pragmas = {
        name: store.backend.query(f"pragma {name}")[0][name]
        for name in ("journal_mode", "page_size", "cache_size", "wal_autocheckpoint", "synchronous")
    }
    assert pragmas == {
        "journal_mode": "wal",
        "page_size": PAGE_SIZE,
        "cache_size": -(CACHE_BYTES // 1024),
        "wal_autocheckpoint": WAL_CHECKPOINT_PAGES,
        "synchronous": 1,  # NORMAL: a commit is durable at the next checkpoint, the WAL stays whole
    }


def test_a_v1_database_opens_and_upgrades_keeping_its_rows(tmp_path):
    db = tmp_path / "v1.db"
    with sqlite3.connect(db) as connection:
        connection.executescript(V1.read_text())
    store = Store(db)
    assert store.schema_version == SCHEMA_VERSION
    (story,) = why_from_store(store, "ops@slow.example.net", None).deliveries  # indexed under schema 1
    assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"]
    assert story.diagnosis.id == "mailbox-full"
    assert store.position("v1/mail.log").lines == 10
    # the ad-hoc audit and feedback tables kept their rows and gained the columns they lacked
    store.record_feedback("discord", user="42", channel="7", guild="9", diagnosis="unknown", helpful=False)
    assert [(r["surface"], r["guild"], r["helpful"]) for r in store.feedback_rows()] == [
        ("slack", None, 1),
        ("discord", "9", 0),
    ]
    store.record_audit("console", "me", None, "a@b.example", "answered: 0 stories")
    assert [r["user"] for r in store.audit_rows()] == ["U0ANNA", "me"]
    store.close()
    assert Store(db).schema_version == SCHEMA_VERSION  # and opening it again changes nothing


def _insert_v1_stories(backend) -> None:
    """The stories of schema 1's fixture (deferred-then-bounced.log, ingested as source mx1),
    into tables of schema 1 or 2."""
    for line in V1.read_text().splitlines():
        if line.startswith(('INSERT INTO "deliveries"', 'INSERT INTO "attempts"', 'INSERT INTO "messages"')):
            backend.execute(line.rstrip(";"))


def test_a_v4_index_upgrades_and_why_diagnoses_its_stories_when_it_reads_them(store_target):
    """Schema 5 keeps no diagnosis. An index with stories keeps its diagnosis columns (dropping
    one rewrites every row of the table) but nothing writes or reads them any more: a diagnosis
    stored by an older knowledge base is ignored, and `why` diagnoses the story from its
    evidence, as the knowledge base says today."""
    backend = open_backend(store_target)
    with backend.transaction():
        backend.execute("create table meta (key text primary key, value text)")
        STEPS[1](backend)
        STEPS[2](backend)
        _insert_v1_stories(backend)
        STEPS[3](backend)
        STEPS[4](backend)
        # as an older knowledge base might have said it: stale
        backend.execute("update deliveries set diagnosis_id = 'unknown', diagnosis_title = 'Unknown', confidence = 0")
        backend.execute("insert into meta (key, value) values ('schema_version', '4')")
    backend.close()
    store = Store(store_target)
    assert store.schema_version == SCHEMA_VERSION
    assert set(DIAGNOSIS_COLUMNS) <= store.backend.columns("deliveries")  # kept: the table has stories
    assert store.counts() == {"deliveries": 2, "attempts": 4, "messages": 1, "positions": 0}
    (story,) = why_from_store(store, "ops@slow.example.net", None).deliveries
    assert (story.status, story.diagnosis.id) == ("bounced", "mailbox-full")
    (delivered,) = why_from_store(store, "carl@partner.example", None).deliveries
    assert delivered.diagnosis.id == "delivered"
    ingest_paths(store, [str(LOG)], source="mx2")  # new stories: nothing written in those columns
    rows = store.backend.query("select source, diagnosis_id from deliveries order by source")
    assert [(r["source"], r["diagnosis_id"]) for r in rows] == [("mx1", "unknown")] * 2 + [("mx2", None)] * 2
    again = why_from_store(store, "ops@slow.example.net", None).deliveries  # mx1's story and mx2's
    assert sorted(d.diagnosis.id for d in again) == ["mailbox-full", "mailbox-full"]
    store.close()


def test_an_empty_v4_index_upgrades_without_the_diagnosis_columns(store_target):
    backend = open_backend(store_target)
    with backend.transaction():
        backend.execute("create table meta (key text primary key, value text)")
        for version in (1, 2, 3, 4):
            STEPS[version](backend)
        backend.execute("insert into meta (key, value) values ('schema_version', '4')")
    backend.close()
    store = Store(store_target)
    assert store.schema_version == SCHEMA_VERSION
    if store.backend.drops_columns:  # (SQLite before 3.35 cannot drop a column)
        assert not set(DIAGNOSIS_COLUMNS) & store.backend.columns("deliveries")
    ingest_paths(store, [str(LOG)], source="mx1")
    (story,) = why_from_store(store, "ops@slow.example.net", None).deliveries
    assert story.diagnosis.id == "mailbox-full"
    store.close()


def test_a_v2_index_upgrades_and_ingesting_its_log_again_adds_nothing(store_target):
    """Schema 3 keys an attempt by (delivery_id, line), not by a text id: the attempts a
    schema-2 index holds must keep matching the lines they came from, or a re-read of the
    log would add them twice."""
    backend = open_backend(store_target)
    with backend.transaction():
        backend.execute("create table meta (key text primary key, value text)")
        STEPS[1](backend)
        STEPS[2](backend)
        backend.execute("insert into meta (key, value) values ('schema_version', '2')")
        _insert_v1_stories(backend)
    backend.close()
    store = Store(store_target)
    assert store.schema_version == SCHEMA_VERSION
    assert store.counts() == {"deliveries": 2, "attempts": 4, "messages": 1, "positions": 0}
    ingest_paths(store, [str(LOG)], source="mx1")
    assert store.counts() == {"deliveries": 2, "attempts": 4, "messages": 1, "positions": 1}
    (story,) = why_from_store(store, "ops@slow.example.net", None).deliveries
    assert [(a.status, a.evidence[-1].line) for a in story.attempts] == [
        ("deferred", 5),
        ("deferred", 7),
        ("bounced", 8),
    ]


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    db = tmp_path / "new.db"
    Store(db).close()
    with sqlite3.connect(db) as connection:
        connection.execute("update meta set value = '99' where key = 'schema_version'")
    with pytest.raises(StoreError, match="newer whyfailed .schema 99.; upgrade whyfailed"):
        Store(db)


def test_audit_and_feedback_rows(store_target):
    store = Store(store_target)
    store_audit(store_target)(Context("slack", "U1", "C1"), "ops@slow.example.net", "refused")
    store.record_feedback("slack", user="U1", channel="C1", diagnosis="greylisted", helpful=True, reference="t:0")
    [audit] = store.audit_rows()
    assert (audit["surface"], audit["user"], audit["channel"], audit["outcome"]) == ("slack", "U1", "C1", "refused")
    [feedback] = store.feedback_rows()
    assert (feedback["user"], feedback["diagnosis"], feedback["helpful"], feedback["reference"]) == (
        "U1",
        "greylisted",
        1,
        "t:0",
    )
    with pytest.raises(TypeError, match="not feedback columns: colour"):
        store.record_feedback("slack", user="U1", colour="red")


def test_several_connections_opening_a_new_database_at_once_migrate_it_once(store_target):
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Store(store_target).close()
        except BaseException as error:  # collected, so a failure shows in the assertion below
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Store(store_target).schema_version == SCHEMA_VERSION


# --- /whyfailed ADDRESS: the index or the logs ----------------------------------------------


def test_lookup_scans_the_logs_when_the_database_is_only_an_audit_trail(tmp_path):
    db = tmp_path / "whyfailed.db"
    settings = Settings(db=str(db), database_url=None, logs=[str(LOG)])
    conversation = Conversation(settings, audit=store_audit(settings.store_target))
    conversation.on_command("not-an-address", CONSOLE)  # the audit row creates the database file
    assert db.exists() and not Store(db).has_index()
    reply = conversation.on_command("ops@slow.example.net", CONSOLE)
    assert reply.kind == "report"  # before: "No deliveries", read from the empty database
    assert [d.status for d in reply.report.deliveries] == ["bounced"]


def test_lookup_uses_an_index_that_holds_deliveries(tmp_path):
    db = tmp_path / "whyfailed.db"
    ingest_paths(Store(db), [str(LOG)])
    settings = Settings(db=str(db), database_url=None, logs=[str(tmp_path / "gone.log")])
    reply = Conversation(settings).on_command("ops@slow.example.net", CONSOLE)
    assert reply.kind == "report" and reply.report.input.startswith("index ")


def test_lookup_uses_the_shared_database_when_database_url_is_set(pg_url, tmp_path):
    ingest_paths(Store(pg_url), [str(LOG)])
    settings = Settings(db=str(tmp_path / "absent.db"), database_url=pg_url, logs=[])
    reply = Conversation(settings, audit=store_audit(settings.store_target)).on_command("ops@slow.example.net", CONSOLE)
    assert reply.kind == "report" and PASSWORD not in reply.report.input
    assert [r["outcome"] for r in Store(pg_url).audit_rows()] == ["answered: 1 stories"]
    assert not (tmp_path / "absent.db").exists()


# --- the command line against PostgreSQL ------------------------------------------------------


def test_why_and_doctor_read_database_url_and_never_show_the_password(pg_url, run_cli):
    done = run_cli("ingest", str(LOG), env={"DATABASE_URL": pg_url})
    assert done.returncode == 0, done.stderr
    why = run_cli("why", "ops@slow.example.net", "--format", "json", env={"DATABASE_URL": pg_url})
    assert why.returncode == 0, why.stderr
    assert json.loads(why.stdout)["deliveries"][0]["status"] == "bounced"
    assert PASSWORD.encode() not in why.stdout + why.stderr
    doctor = run_cli("doctor", "-f", "json", env={"DATABASE_URL": pg_url})
    found = {f["area"]: f for f in json.loads(doctor.stdout)}["database"]
    assert found["state"] == "ok", found
    assert found["detail"].startswith("PostgreSQL postgresql://whyfailed:***@127.0.0.1:")
    assert f"writable, schema {SCHEMA_VERSION}, 2 stories" in found["detail"]
    assert PASSWORD.encode() not in doctor.stdout + doctor.stderr


def test_db_option_wins_over_database_url(pg_url, run_cli, tmp_path):
    db = tmp_path / "local.db"
    assert run_cli("ingest", str(LOG), "--db", str(db), env={"DATABASE_URL": pg_url}).returncode == 0
    assert Store(db).counts()["deliveries"] == 2 and Store(pg_url).counts()["deliveries"] == 0


@pytest.mark.parametrize(
    "problem",
    ["closed port", "wrong password", "no such database", "bad port"],
)
def test_an_unusable_database_url_is_one_clear_line_without_the_password(pg_server, run_cli, problem):
    url = {
        "closed port": f"postgresql://whyfailed:{PASSWORD}@127.0.0.1:{free_port()}/postgres",
        "wrong password": pg_server.url(password="not-" + PASSWORD),
        "no such database": pg_server.url("nowhere"),
        "bad port": f"postgresql://whyfailed:{PASSWORD}@127.0.0.1:notaport/postgres",
    }[problem]
    done = run_cli("why", "a@b.example", env={"DATABASE_URL": url})
    assert done.returncode == 2
    message = done.stderr.decode()
    assert message.startswith("error: postgresql://whyfailed:***@127.0.0.1:"), message
    assert len(message.strip().splitlines()) == 1 and "Traceback" not in message
    assert PASSWORD not in message  # the wrong one contains it too
    doctor = run_cli("doctor", "-f", "json", env={"DATABASE_URL": url})
    found = {f["area"]: f for f in json.loads(doctor.stdout)}["database"]
    assert found["state"] == "problem" and PASSWORD not in found["detail"]


def test_redact_url_hides_passwords_wherever_they_are():
    assert redact_url("postgresql://u:p%40ss@db.example:5432/x") == "postgresql://u:***@db.example:5432/x"
    assert redact_url("postgresql://u@db/x?password=pw&sslmode=require") == (
        "postgresql://u@db/x?password=***&sslmode=require"
    )
    assert redact_url("postgresql://db/x") == "postgresql://db/x"
