"""`whyfailed doctor`: check the set-up the way a new user needs it checked, and say what to fix.

Nothing here talks to the network unless asked (`online=True`): offline, Slack's and
Discord's reachability is reported as not checked, never as fine.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from bot.settings import Settings

OK, WARN, FAIL, SKIP = "ok", "warning", "problem", "not checked"


@dataclass(frozen=True)
class Finding:
    area: str
    state: str
    detail: str
    fix: str = ""


def _token(name: str, pattern: str, what: str) -> Finding | None:
    value = os.environ.get(name)
    if not value:
        return None
    if re.fullmatch(pattern, value):
        return Finding(name, OK, f"{what} is set and well-formed")
    return Finding(name, FAIL, f"{what} is set but does not look right", f"check {name}: expected {what}")


def check_tokens() -> list[Finding]:
    findings = [
        f
        for f in (
            _token("SLACK_BOT_TOKEN", r"xoxb-[0-9A-Za-z-]{10,}", "a bot token (xoxb-...)"),
            _token("SLACK_APP_TOKEN", r"xapp-[0-9A-Za-z-]{10,}", "an app-level token (xapp-...) for Socket Mode"),
            _token("SLACK_SIGNING_SECRET", r"[0-9a-f]{32}", "a 32-hex-digit signing secret"),
            _token("DISCORD_TOKEN", r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}", "a bot token of three dot-separated parts"),
        )
        if f is not None
    ]
    if not findings:
        findings.append(
            Finding(
                "chat tokens",
                WARN,
                "no Slack or Discord token is set: only the CLI and `whyfailed chat` can run",
                "set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (see README)",
            )
        )
    return findings


def check_reachability(online: bool) -> list[Finding]:
    targets = [("Slack", "slack.com"), ("Discord", "discord.com")]
    if not online:
        return [
            Finding(f"{name} reachability", SKIP, "offline check; run `whyfailed doctor --online` to try")
            for name, _ in targets
        ]
    found = []
    for name, host in targets:
        try:
            socket.create_connection((host, 443), timeout=3).close()
            found.append(Finding(f"{name} reachability", OK, f"{host}:443 answered"))
        except OSError as error:
            found.append(
                Finding(
                    f"{name} reachability",
                    FAIL,
                    f"cannot reach {host}:443 ({error})",
                    "check the network, proxy or firewall of this host",
                )
            )
    return found


def check_database(target: str) -> Finding:
    """Which backend, whether we can write to it, and whether its schema is current. Opening it
    migrates an older schema, as any command would; the URL is shown without its password."""
    from bot.store import SCHEMA_VERSION, Store, StoreError
    from bot.store_backends import is_postgres_url, one_line, redact_url

    postgres = is_postgres_url(target)
    where = redact_url(target) if postgres else target
    if not postgres and not os.path.exists(target):
        fix = "run `whyfailed ingest LOG` to create it"
        return Finding("database", WARN, f"SQLite {where} does not exist yet", fix)
    backend = "PostgreSQL" if postgres else "SQLite"
    try:
        store = Store(target, timeout=2, patience=0)
    except StoreError as error:
        fix = "check DATABASE_URL, the server and the user's rights" if postgres else "check the file and its folder"
        return Finding("database", FAIL, f"{backend}: {error}", fix)
    try:
        store.check_writable()
        version, counts = store.schema_version, store.counts()
    except Exception as error:  # StoreError, sqlite3's and psycopg's errors: a finding, never a traceback
        fix = "check the user's rights on the tables" if postgres else "check the file's permissions and disk space"
        return Finding("database", FAIL, f"{backend} {where}: not writable ({one_line(error)})", fix)
    finally:
        store.close()
    if version != SCHEMA_VERSION:
        return Finding(
            "database",
            FAIL,
            f"{backend} {where}: schema {version}, expected {SCHEMA_VERSION}",
            "run any whyfailed command against it to migrate",
        )
    return Finding(
        "database",
        OK,
        f"{backend} {where}: writable, schema {SCHEMA_VERSION}, {counts['deliveries']} stories",
    )


def check_sources(settings: Settings) -> list[Finding]:
    from bot.sources.files import expand

    findings = []
    for pattern in settings.logs:
        paths = [p for p in expand(pattern) if p.exists()]
        unreadable = [str(p) for p in paths if not os.access(p, os.R_OK)]
        if not paths:
            findings.append(Finding(f"log {pattern}", FAIL, "no such file", "fix WHYFAILED_LOGS"))
        elif unreadable:
            findings.append(
                Finding(
                    f"log {pattern}",
                    FAIL,
                    f"cannot read {', '.join(unreadable)}",
                    "run as a user in the log's group (often adm)",
                )
            )
        else:
            findings.append(Finding(f"log {pattern}", OK, f"{len(paths)} file(s) readable"))
    return findings


def check_knowledge() -> list[Finding]:
    from bot.kbcheck import check_examples
    from bot.knowledge import KnowledgeError, load_articles

    try:
        articles = load_articles()
    except KnowledgeError as error:
        return [Finding("knowledge base", FAIL, str(error), "fix the article's front matter")]
    results = check_examples(articles)
    failed = [r for r in results if not r.ok]
    if failed:
        first = failed[0]
        kind = "near-miss" if first.near_miss else "example"
        return [
            Finding(
                "knowledge base",
                FAIL,
                f"{len(failed)} of {len(results)} examples fail, e.g. "
                f"{first.article} {kind} {first.index} gave {list(first.found)}",
                "edit the article's rules until its examples pass",
            )
        ]
    return [Finding("knowledge base", OK, f"{len(articles)} articles; all {len(results)} examples pass")]


def check_grammars() -> Finding:
    from lark import Transformer

    from bot.parse.grammars import parser
    from bot.resources import grammar_dir

    names = sorted(p.stem for p in grammar_dir().glob("*.lark") if p.stem != "common")
    try:
        for name in names:
            parser(name, Transformer)
    except RuntimeError as error:
        return Finding("grammars", FAIL, str(error), "fix the grammar file")
    return Finding("grammars", OK, f"{len(names)} grammars build (LALR)")


def run_doctor(settings: Settings | None = None, online: bool = False) -> list[Finding]:
    settings = settings or Settings()
    return [
        *check_tokens(),
        *check_reachability(online),
        check_database(settings.store_target),
        *check_sources(settings),
        check_grammars(),
        *check_knowledge(),
    ]
