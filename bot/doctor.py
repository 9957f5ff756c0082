"""`whyfailed doctor`: check the set-up the way a new user needs it checked, and say what to fix.

Nothing here talks to the network unless asked (`online=True`): offline, Slack's and
Discord's reachability is reported as not checked, never as fine.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import SettingsError

from bot.settings import Settings

OK, WARN, FAIL, SKIP = "ok", "warning", "problem", "not checked"


@dataclass(frozen=True)
class Finding:
    area: str
    state: str
    detail: str
    fix: str = ""


def _shape(name: str, value: str, problems: list[str], what: str) -> Finding | None:
    """A token's finding from the settings class's own checks (the ones `serve` refuses to start on)."""
    if not value:
        return None
    mine = [p for p in problems if p.startswith(name)]
    if not mine:
        return Finding(name, OK, f"{what} is set and well-formed")
    return Finding(name, FAIL, f"{what} is set but does not look right", mine[0])


def _chat_settings():
    from bot.adapters.discord_settings import DiscordSettings
    from bot.adapters.slack_settings import SlackSettings

    return SlackSettings(), DiscordSettings()


def check_tokens() -> list[Finding]:
    """Token shapes, from the environment and .env alike (the same loading the processes use)."""
    slack, discord = _chat_settings()
    http = slack.model_copy(update={"mode": "http"}).problems()
    socket_mode = slack.model_copy(update={"mode": "socket"}).problems()
    findings = [
        f
        for f in (
            _shape("SLACK_BOT_TOKEN", slack.bot_token, http, "a bot token (xoxb-...)"),
            _shape("SLACK_APP_TOKEN", slack.app_token, socket_mode, "an app-level token (xapp-...) for Socket Mode"),
            _shape("SLACK_SIGNING_SECRET", slack.signing_secret, http, "a 32-hex-digit signing secret"),
            _shape("DISCORD_TOKEN", discord.token, discord.problems(), "a bot token of three dot-separated parts"),
        )
        if f is not None
    ]
    if not findings:
        findings.append(
            Finding(
                "chat tokens",
                WARN,
                "no Slack or Discord token is set: only the CLI and `whyfailed chat` can run",
                "set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (see README and .env.example)",
            )
        )
    elif slack.bot_token and not (slack.signing_secret or slack.app_token):
        findings.append(
            Finding(
                "Slack",
                FAIL,
                "SLACK_BOT_TOKEN is set, but neither SLACK_SIGNING_SECRET (web) nor SLACK_APP_TOKEN (worker)",
                "set SLACK_SIGNING_SECRET for HTTP mode, or SLACK_APP_TOKEN for Socket Mode",
            )
        )
    return findings


def _ask(url: str, headers: dict[str, str], timeout: float) -> tuple[int, dict]:
    """GET url: the HTTP status and the JSON body ({} when there is none)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "whyfailed-doctor", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, body = answer.status, answer.read(65536)
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read(65536)
    try:
        return status, json.loads(body or b"{}")
    except ValueError:
        return status, {}


def _unreachable(name: str, url: str, error: BaseException) -> Finding:
    from urllib.parse import urlparse

    reason = getattr(error, "reason", None) or error
    return Finding(
        f"{name} reachability",
        FAIL,
        f"could not reach {urlparse(url).hostname}: offline? ({reason})",
        "check this host's network, DNS, proxy (HTTPS_PROXY) or firewall; the bot needs outbound HTTPS",
    )


def check_slack_online(timeout: float = 5.0) -> Finding:
    """auth.test with the bot token (or api.test without one): reachable, and is the token accepted?"""
    slack, _ = _chat_settings()
    base = slack.api_url.rstrip("/") + "/"
    token = slack.bot_token
    try:
        if token:
            _, body = _ask(base + "auth.test", {"Authorization": f"Bearer {token}"}, timeout)
        else:
            _, body = _ask(base + "api.test", {}, timeout)
    except (OSError, ValueError) as error:  # URLError, timeouts and resets are OSErrors
        return _unreachable("Slack", base, error)
    if body.get("ok") and token:
        return Finding("Slack reachability", OK, f"reached Slack; the bot token works for team {body.get('team')}")
    if body.get("ok"):
        return Finding("Slack reachability", OK, "reached Slack (no bot token to try)")
    return Finding(
        "Slack reachability",
        FAIL,
        f"Slack answered but refused: {body.get('error') or 'no answer it understood'}",
        "copy the Bot User OAuth Token again (OAuth & Permissions), and reinstall the app if it was revoked",
    )


def check_discord_online(timeout: float = 5.0) -> Finding:
    """/users/@me with the bot token (or /gateway without one)."""
    _, discord = _chat_settings()
    base = discord.api_url.rstrip("/")
    try:
        if discord.token:
            status, body = _ask(base + "/users/@me", {"Authorization": f"Bot {discord.token}"}, timeout)
        else:
            status, body = _ask(base + "/gateway", {}, timeout)
    except (OSError, ValueError) as error:
        return _unreachable("Discord", base, error)
    if status == 200:
        who = f" as {body.get('username')}" if body.get("username") else ""
        return Finding("Discord reachability", OK, f"reached Discord{who}")
    if status == 401:
        return Finding(
            "Discord reachability",
            FAIL,
            "Discord refused DISCORD_TOKEN (401)",
            "reset the token on the Developer Portal's Bot page and set DISCORD_TOKEN again",
        )
    return Finding("Discord reachability", FAIL, f"Discord answered HTTP {status}", "try again later")


def check_reachability(online: bool) -> list[Finding]:
    if not online:
        return [
            Finding(f"{name} reachability", SKIP, "offline check; run `whyfailed doctor --online` to try")
            for name in ("Slack", "Discord")
        ]
    slack, discord = _chat_settings()
    checks = [(check_slack_online, slack.bot_token), (check_discord_online, discord.token)]
    in_use = [check for check, token in checks if token]  # only the surfaces configured, if any are
    return [check() for check in (in_use or [check for check, _ in checks])]


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
        missing = store.missing_lookup_indexes()
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
    if missing:  # a new index being filled (ingest builds them at the end), or a load that was killed
        return Finding(
            "database",
            WARN,
            f"{backend} {where}: writable, schema {SCHEMA_VERSION}, {counts['deliveries']} stories; "
            f"lookups read the whole table: {len(missing)} lookup indexes are missing",
            "wait for a running `whyfailed ingest` to finish, or run it again: it builds them",
        )
    return Finding(
        "database",
        OK,
        f"{backend} {where}: writable, schema {SCHEMA_VERSION}, {counts['deliveries']} stories",
    )


def check_sources(settings: Settings) -> list[Finding]:
    """WHYFAILED_LOGS: what /whyfailed ADDRESS scans when there is no index."""
    return _files_readable(settings.logs, "WHYFAILED_LOGS")


def check_named_sources() -> list[Finding]:
    """The sources `whyfailed serve ingest` follows: the configuration parses, and each can be read."""
    from bot.sources.config import FileSource, JournaldSource, SourceConfigError, SshSource, load_sources

    try:
        sources = load_sources()
    except SourceConfigError as error:
        return [Finding("sources", FAIL, str(error), "fix WHYFAILED_SOURCES or WHYFAILED_SOURCES_FILE")]
    findings = []
    for name, source in sources.items():
        area = f"source {name}"
        if isinstance(source, FileSource):
            findings += [replace(f, area=area) for f in _files_readable(source.patterns, "the source's path")]
        elif isinstance(source, SshSource):
            unreadable = [
                p for p in (source.key, source.known_hosts) if p and not os.access(os.path.expanduser(p), os.R_OK)
            ]
            findings.append(
                Finding(area, FAIL, f"cannot read {', '.join(unreadable)}", "check the key's path and permissions")
                if unreadable
                else Finding(area, OK, f"ssh {source.user}@{source.host}:{source.path} (connection not tried)")
            )
        elif isinstance(source, JournaldSource):
            if source.directory and not os.access(source.directory, os.R_OK):
                findings.append(Finding(area, FAIL, f"cannot read {source.directory}", "check the journal folder"))
            elif not shutil.which(source.journalctl):
                findings.append(
                    Finding(area, FAIL, f"{source.journalctl} is not installed here", "install systemd's journalctl")
                )
            else:
                findings.append(Finding(area, OK, "journalctl found"))
        else:
            findings.append(Finding(area, OK, f"will listen on {source.listen} ({', '.join(source.protocols)})"))
    return findings


def _files_readable(patterns: list[str], what: str) -> list[Finding]:
    from bot.sources.files import expand

    findings = []
    for pattern in patterns:
        paths = [p for p in expand(pattern) if p.exists()]
        unreadable = [str(p) for p in paths if not os.access(p, os.R_OK)]
        if not paths:
            findings.append(Finding(f"log {pattern}", FAIL, "no such file", f"fix {what}"))
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


def check_knowledge(folder: Path | None = None) -> list[Finding]:
    """Every article parses and its rules compile (each one reported, not only the first), and
    every example diagnoses to its article."""
    from bot.kbcheck import check_examples
    from bot.knowledge import KnowledgeError, load_article
    from bot.resources import knowledge_dir

    folder = folder or knowledge_dir()
    articles, broken = {}, []
    for path in sorted(folder.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        try:
            article = load_article(path)
        except KnowledgeError as error:
            broken.append(Finding(f"article {path.name}", FAIL, str(error), "fix the article's front matter or rules"))
            continue
        articles[article.id] = article
    if "unknown" not in articles:
        broken.append(Finding("knowledge base", FAIL, "the fallback article unknown.md is missing or broken", ""))
    if broken:
        return broken
    results = check_examples(articles)
    failed = [r for r in results if not r.ok]
    if failed:
        return [
            Finding(
                f"article {r.article}.md",
                FAIL,
                f"{'near-miss' if r.near_miss else 'example'} {r.index} gave {list(r.found)}",
                "edit the article's rules (or the example) until its examples pass",
            )
            for r in failed[:20]
        ]
    return [Finding("knowledge base", OK, f"{len(articles)} articles parse; all {len(results)} examples pass")]


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
    if settings is None:
        try:
            settings = Settings()
            _chat_settings()
        except (ValidationError, SettingsError) as error:
            return [Finding("settings", FAIL, _settings_problem(error), "fix the variable in the environment or .env")]
    return [
        *check_tokens(),
        *check_reachability(online),
        check_database(settings.store_target),
        *check_sources(settings),
        *check_named_sources(),
        check_grammars(),
        *check_knowledge(),
    ]


def _settings_problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'setting'}: {e['msg']}" for e in error.errors())
    return f"{error} (lists are JSON: WHYFAILED_ALLOWED_CHANNELS='[\"C0123ABCD\"]')"
