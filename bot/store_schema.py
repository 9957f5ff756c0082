"""The index's tables, and the steps that bring an older database up to date.

One DDL text for both backends: SQLite reads `double precision` as REAL and `bigint` as
INTEGER, and both accept double-quoted identifiers (`"offset"` and `"user"` are reserved words
in PostgreSQL). Only the automatic row id differs, and the backend supplies it.

v1: deliveries, attempts, messages, positions, meta.
v2: audit, feedback and cursors become part of the schema (before, the chat adapters and the
    journald source created them on first write, with whatever columns that first row had).
v3: cheaper to write (issue 4: every index is updated for every story ingest writes, at random
    places since the keys are queue ids and addresses). The indexes no query uses go (deliveries
    by queue id, message id and message key; messages by message id), and an attempt is keyed by
    (delivery_id, line) in one index, instead of by a text id that repeated both plus a second
    index on them.
v4: deliveries by queue id and by Message-ID again: `why` finds a story by either, as issue 4
    asks of the index (v3 had dropped them when nothing asked for them yet). The index by
    recipient domain keeps only failures, all `why @domain` asks for: most stories are
    delivered, and ingest no longer files each of them there.
v5: deliveries without a diagnosis (diagnosis_id, diagnosis_title, confidence). The index keeps
    what the logs say; a story is diagnosed when it is read, by the knowledge base of that day.
    A stored diagnosis was never read (`why` diagnosed again), went stale with each edit of the
    knowledge base, and making one for every story took a tenth of ingest's CPU time.
    The columns are dropped from a table with no story yet (a new index). One with stories keeps
    them, no longer written or read: SQLite drops a column by rewriting every row, which for a
    big index would hold the write lock longer than other processes wait for it, and a process
    of the version before, still running, goes on writing them without an error. So do indexes
    upgraded by SQLite before 3.35, which cannot drop a column.
"""

from __future__ import annotations

SCHEMA_VERSION = 5

_V1 = [
    """create table if not exists messages (
        id text primary key, source text, host text, queue_id text, sender text, message_id text,
        first_seen text, context text)""",
    """create table if not exists deliveries (
        id text primary key, source text, format text, host text, queue_id text, message_key text,
        recipient text, recipient_lc text, recipient_domain text, sender text, sender_lc text,
        message_id text, direction text, status text, diagnosis_id text, diagnosis_title text,
        confidence double precision, first_seen text, last_seen text)""",
    """create table if not exists attempts (
        id text primary key, delivery_id text, line bigint, time text, status text, stage text,
        reply_code bigint, enhanced_status text, text text, remote_host text, remote_ip text, evidence text)""",
    """create table if not exists positions (
        path text primary key, inode bigint, "offset" bigint, lines bigint, updated double precision)""",
    "create index if not exists idx_deliveries_recipient_lc on deliveries (recipient_lc)",
    "create index if not exists idx_deliveries_recipient_domain on deliveries (recipient_domain)",
    "create index if not exists idx_deliveries_sender_lc on deliveries (sender_lc)",
    "create index if not exists idx_deliveries_queue_id on deliveries (queue_id)",
    "create index if not exists idx_deliveries_message_id on deliveries (message_id)",
    "create index if not exists idx_deliveries_last_seen on deliveries (last_seen)",
    "create index if not exists idx_deliveries_message_key on deliveries (message_key)",
    "create index if not exists idx_attempts_delivery_id_line on attempts (delivery_id, line)",
    "create index if not exists idx_messages_message_id on messages (message_id)",
]

# v2's tables, column by column, so that a table a v1 adapter created ad hoc gains what it lacks
AUDIT_COLUMNS = {
    "time": "double precision",
    "surface": "text",
    "user": "text",
    "channel": "text",
    "query": "text",
    "outcome": "text",
}
FEEDBACK_COLUMNS = {
    "time": "double precision",
    "surface": "text",
    "user": "text",
    "channel": "text",
    "guild": "text",
    "diagnosis": "text",
    "helpful": "integer",
    "message_id": "text",
    "message_ts": "text",
    "reference": "text",
}
_V2 = [
    """create table if not exists cursors (
        path text, lines bigint, cursor text, updated double precision, primary key (path, lines))""",
    "create index if not exists idx_audit_time on audit (time)",
    "create index if not exists idx_feedback_time on feedback (time)",
]


_UNUSED_V1_INDEXES = (
    "idx_deliveries_queue_id",
    "idx_deliveries_message_id",
    "idx_deliveries_message_key",
    "idx_messages_message_id",
)
_ATTEMPT_COLUMNS = (
    "delivery_id, line, time, status, stage, reply_code, enhanced_status, text, remote_host, remote_ip, evidence"
)
_ATTEMPTS_V3 = """create table attempts (
        delivery_id text, line bigint, time text, status text, stage text, reply_code bigint,
        enhanced_status text, text text, remote_host text, remote_ip text, evidence text,
        primary key (delivery_id, line))"""


def create_v1(backend) -> None:
    for statement in _V1:
        backend.execute(statement)


def create_v2(backend) -> None:
    tables = backend.tables()
    for table, columns in (("audit", AUDIT_COLUMNS), ("feedback", FEEDBACK_COLUMNS)):
        if table not in tables:
            body = ", ".join(f'"{name}" {kind}' for name, kind in columns.items())
            backend.execute(f"create table {table} (id {backend.row_id}, {body})")
            continue
        have = backend.columns(table)
        for name, kind in columns.items():
            if name not in have:  # sqlite-utils' insert(alter=True) only added the columns it was given
                backend.execute(f'alter table {table} add column "{name}" {kind}')
    for statement in _V2:
        backend.execute(statement)


def create_v3(backend) -> None:
    for index in _UNUSED_V1_INDEXES:
        backend.execute(f"drop index if exists {index}")
    if "id" not in backend.columns("attempts"):
        return
    # A primary key cannot be changed in place (SQLite): copy the rows into the new table.
    backend.execute("alter table attempts rename to attempts_v2")
    backend.execute(_ATTEMPTS_V3)
    backend.execute(f"insert into attempts ({_ATTEMPT_COLUMNS}) select {_ATTEMPT_COLUMNS} from attempts_v2")
    backend.execute("drop table attempts_v2")  # and its index on (delivery_id, line) with it


_V4 = [
    "create index if not exists idx_deliveries_queue_id on deliveries (queue_id)",
    "create index if not exists idx_deliveries_message_id on deliveries (message_id)",
    "drop index if exists idx_deliveries_recipient_domain",
    # the condition word for word as Store.find asks it, so that both engines use this index
    "create index if not exists idx_deliveries_failed_domain on deliveries (recipient_domain) "
    "where status != 'delivered'",
]


def create_v4(backend) -> None:
    for statement in _V4:
        backend.execute(statement)


DIAGNOSIS_COLUMNS = ("diagnosis_id", "diagnosis_title", "confidence")


def create_v5(backend) -> None:
    if not backend.drops_columns or backend.query("select 1 from deliveries limit 1"):
        return  # (see v5 above: they stay, never written or read)
    have = backend.columns("deliveries")
    for column in DIAGNOSIS_COLUMNS:
        if column in have:
            backend.execute(f"alter table deliveries drop column {column}")


# The indexes `why` finds stories by, as the current schema has them (a test holds this to what
# the migrations build): ingest may leave them out while it fills a new index, and build them
# once at the end (Store.lookup_indexes_deferred), which costs far less than keeping each of
# them up to date story by story at random places.
LOOKUP_INDEXES = {
    **{
        f"idx_deliveries_{column}": f"create index if not exists idx_deliveries_{column} on deliveries ({column})"
        for column in ("recipient_lc", "sender_lc", "queue_id", "message_id", "last_seen")
    },
    "idx_deliveries_failed_domain": _V4[-1],
}


STEPS = {
    1: create_v1,
    2: create_v2,
    3: create_v3,
    4: create_v4,
    5: create_v5,
}  # version -> what brings the version before it up to it


def read_version(backend) -> int:
    if "meta" not in backend.tables():
        return 0
    rows = backend.query("select value from meta where key = 'schema_version'")
    return int(rows[0]["value"]) if rows else 0


def migrate(backend, where: str) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version found before."""
    from bot.store_backends import StoreError

    found = read_version(backend)
    if found > SCHEMA_VERSION:
        raise StoreError(f"{where} was written by a newer whyfailed (schema {found}); upgrade whyfailed.")
    if found == SCHEMA_VERSION:
        return found  # the common case takes no write lock: readers open while a writer works
    # Several processes may open a new database at once: the lock makes one migrate and the
    # others find the work done when they read the version again inside it.
    with backend.transaction(lock="schema"):
        backend.execute("create table if not exists meta (key text primary key, value text)")
        found = read_version(backend)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            STEPS[version](backend)
        if found < SCHEMA_VERSION:
            backend.execute(
                "insert into meta (key, value) values ('schema_version', ?) "
                "on conflict (key) do update set value = excluded.value",
                [str(SCHEMA_VERSION)],
            )
    return found
