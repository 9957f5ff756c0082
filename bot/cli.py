"""The `whyfailed` command line. Each command maps to one documented function of the core."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import click

from bot import __version__
from bot.early import WHY_LIMIT
from bot.sources.files import CHUNK_LINES
from bot.textio import MAX_INPUT_BYTES, InputError, read_input

FORMATS = ("text", "markdown", "json", "jsonl")
EXIT_OK, EXIT_USAGE = 0, 2


def _stderr():
    from rich.console import Console  # imported when needed: `why --format json` never pays for it

    # Off a terminal, one message is one line: scripts and log collectors read stderr too.
    return Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="whyfailed")
def main() -> None:
    """Tell why an email was not delivered, from a mail log or a bounce message."""


def _resolver(_ctx, _param, value):
    if value is None:
        return None
    from bot.checks.dns import ResolverError, parse_resolver

    try:
        parse_resolver(value)
    except ResolverError as error:
        raise click.BadParameter(str(error)) from None
    return value


# diagnose --check, why --check and chat's /check ask the same resolver, given the same way
RESOLVER_OPTION = click.option(
    "--resolver",
    metavar="IP[:PORT]",
    callback=_resolver,
    help="The DNS resolver the checks ask (default: $WHYFAILED_RESOLVER, else /etc/resolv.conf).",
)


def _zones(_ctx, _param, value):
    if value is None:
        return None
    zones = tuple(z.strip().strip(".").lower() for z in value.split(",") if z.strip())
    if not zones:
        raise click.BadParameter("give one or more zones, comma-separated (e.g. bl.spamcop.net)")
    return zones


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATH ...|-]")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people; markdown for tickets; json/jsonl for programs.",
)
@click.option("--verbose", "-v", is_flag=True, help="Show every evidence line and every line not understood.")
@click.option("--stats", is_flag=True, help="Also print, per format, the lines parsed, relevant and not understood.")
@click.option(
    "--max-bytes",
    type=click.IntRange(1024),
    default=MAX_INPUT_BYTES,
    show_default=True,
    help="Read at most this much of each input.",
)
@click.option("--check", is_flag=True, help="Confirm the diagnosis now: live DNS, reverse DNS, SPF/DMARC, blocklists.")
@click.option("--check-tls", is_flag=True, help="With --check: also connect to the MX's port 25 for tls-failure.")
@RESOLVER_OPTION
@click.option(
    "--dnsbl-zones",
    metavar="ZONE,ZONE...",
    callback=_zones,
    help="The blocklists --check asks (default: $WHYFAILED_DNSBL_ZONES, else Spamhaus ZEN, SpamCop, Barracuda).",
)
# Tests point the TLS check at a STARTTLS server on a loopback port; mail is always on 25.
@click.option("--smtp-port", type=click.IntRange(1, 65535), default=None, hidden=True)
def diagnose(
    paths: tuple[str, ...],
    fmt: str,
    verbose: bool,
    stats: bool,
    max_bytes: int,
    check: bool = False,
    check_tls: bool = False,
    resolver: str | None = None,
    dnsbl_zones: tuple[str, ...] | None = None,
    smtp_port: int | None = None,
) -> None:
    """Diagnose each PATH (a mail log excerpt, an SMTP transcript or a bounce message).

    Reads standard input when PATH is '-' or missing. Exit status: 0 when the input was
    read, whatever it diagnosed; 2 for bad usage or input that cannot be read.
    With --check, adds a "Checked now" section where a live check settles the question.
    """
    from bot.report import diagnose_text

    if not paths:
        if sys.stdin.isatty():
            raise click.UsageError("give a file to diagnose, or pipe a log into `whyfailed diagnose -`.")
        paths = ("-",)
    errors = 0
    reports = []
    for path in paths:
        try:
            source = read_input(path, max_bytes)
        except InputError as error:
            _stderr().print(f"[red]error:[/red] {error}", markup=True)
            errors += 1
            continue
        with _progress(len(source.text), source.name):
            report = diagnose_text(source.text, source.name, source.notes)
        if check or check_tls:
            _check_now(report, tls=check_tls, resolver=resolver, dnsbl_zones=dnsbl_zones, smtp_port=smtp_port)
        reports.append(report)
        _emit(report, fmt, verbose, stats, several=len(paths) > 1)
    if fmt == "json" and len(paths) > 1:
        from bot.render.json import dumps, report_to_dict

        click.echo(dumps([report_to_dict(r) for r in reports], indent=2))
    sys.exit(EXIT_USAGE if errors else EXIT_OK)


def _check_now(report, **settings) -> None:
    """The live checks, with CheckSettings fields from the command line (None: the default)."""
    from contextlib import nullcontext

    from bot.checks.run import CheckSettings, check_report

    given = {name: value for name, value in settings.items() if value is not None}
    with _stderr().status("Checking now…") if sys.stderr.isatty() else nullcontext():
        check_report(report, CheckSettings(**given))


@contextmanager
def _ingest_progress(total: int):
    """Yields what ingest calls with each chunk's bytes: a progress bar on stderr when a person
    is watching; else nothing to draw, and rich is not even imported (0.13 s of the 0.54 s a
    small ingest from cron took)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=_stderr(),
    )
    with progress:
        task = progress.add_task("Indexing", total=total or None)
        yield lambda n: progress.advance(task, n)


class _progress:
    """A spinner on stderr while a large input is diagnosed, when a person is watching."""

    def __init__(self, size: int, name: str):
        self.status = None
        if size > 1_000_000 and sys.stderr.isatty():
            self.status = _stderr().status(f"Diagnosing {name} ({size // 1_000_000} MB)…")

    def __enter__(self):
        if self.status:
            self.status.__enter__()

    def __exit__(self, *exc):
        if self.status:
            self.status.__exit__(*exc)


def _emit(report, fmt: str, verbose: bool, stats: bool, several: bool) -> None:
    if fmt == "json":
        if not several:
            from bot.render.json import render_json

            click.echo(render_json(report))
        return
    if fmt == "jsonl":
        from bot.render.json import dumps, report_to_dict

        click.echo(dumps(report_to_dict(report)))
        return
    if fmt == "markdown":
        from bot.render.markdown import render_markdown

        click.echo(render_markdown(report))
    else:
        from rich.console import Console
        from rich.markup import escape

        from bot.render.common import printable
        from bot.render.text import print_report

        console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
        if several:
            console.rule(printable(escape(report.input)))  # a file name is text from outside too
        print_report(report, console, verbose=verbose)
    if stats:
        _print_stats(report)


def _print_stats(report) -> None:
    from rich.table import Table

    table = Table(title=f"Coverage: {report.input}")
    for column in ("format", "parsed", "relevant", "unparsed"):
        table.add_column(column, justify="left" if column == "format" else "right")
    for name, counts in sorted(report.format_stats.items()):
        table.add_row(name, *(str(counts.get(k, 0)) for k in ("parsed", "relevant", "unparsed")))
    from rich.console import Console

    Console(highlight=False).print(table)


def _duration(_ctx, _param, value):
    if value is None:
        return None
    from bot.why import parse_duration

    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@main.command()
@click.argument("address")
@click.option("--since", callback=_duration, metavar="DURATION", help="Only stories seen in the last 90m, 2h, 7d...")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="The index to read: an SQLite file or a postgresql:// URL (default $DATABASE_URL, $WHYFAILED_DB "
    "or ./whyfailed.db).",
)
@click.option(
    "--log",
    "logs",
    multiple=True,
    metavar="PATH",
    help="Scan these logs (globs and rotated .gz files welcome) instead of the index.",
)
@click.option(
    "--source",
    metavar="NAME",
    help="Only stories from this source: the name logs were ingested under, or a configured source "
    "(without an index, its files are scanned).",
)
@click.option("--limit", type=click.IntRange(1, 500), default=WHY_LIMIT, show_default=True)
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--check", is_flag=True, help="Confirm each diagnosis now: live DNS, reverse DNS, SPF/DMARC, blocklists.")
@RESOLVER_OPTION
def why(
    address: str,
    since,
    db_path: str | None,
    logs: tuple[str, ...],
    source: str | None,
    limit: int,
    fmt: str,
    check: bool = False,
    resolver: str | None = None,
) -> None:
    """The latest deliveries to or from ADDRESS (or '@domain' for its recent failures; a
    Message-ID or a queue id finds that message's), with their timeline and diagnosis; with
    --check, what is true now."""
    import os

    from bot.why import describe_target, labelled, lookup_target, why_from_logs, why_from_store

    try:
        address = lookup_target(address)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="ADDRESS") from None
    if not logs:
        from bot.store_backends import is_postgres_url

        target = _store_target(db_path)
        indexed = is_postgres_url(target) or os.path.exists(target)
        if source and not indexed:
            logs = tuple(_configured_files(source))  # a named file source, scanned where it lives
    if logs:
        report = why_from_logs(list(logs), address, since, limit)
    else:
        from bot.store import Store, StoreError

        if not indexed:
            _stderr().print(f"No index at {target}: run `whyfailed ingest LOG` first, or give --log LOG.", markup=False)
            sys.exit(EXIT_USAGE)
        try:
            report = why_from_store(Store(target), address, since, limit, source=source)
        except StoreError as error:
            _stderr().print(f"error: {error}", markup=False, soft_wrap=True)  # one line, for logs and scripts
            sys.exit(EXIT_USAGE)
    labelled(report, address)
    if check and report.deliveries:
        _check_now(report, resolver=resolver)
    if not report.deliveries and fmt == "text":
        click.echo(f"No deliveries {describe_target(address)} were found" + (" in that time." if since else "."))
        return
    _emit(report, fmt, verbose=False, stats=False, several=False)


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH|SOURCE ...")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="The index to write: an SQLite file or a postgresql:// URL (default $DATABASE_URL, $WHYFAILED_DB "
    "or ./whyfailed.db).",
)
@click.option("--source", help="A name for these logs (default: the path as given).")
@click.option("--keep", callback=_duration, metavar="DURATION", help="Forget stories older than this, e.g. 30d.")
@click.option("--follow", is_flag=True, help="Keep reading as the logs grow, across rotation.")
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 60),
    default=1.0,
    show_default=True,
    help="With --follow: seconds between reads.",
)
@click.option(
    "--chunk-lines",
    type=click.IntRange(1, 1_000_000),
    default=CHUNK_LINES,
    show_default=True,
    help="Lines per transaction: larger is faster, smaller loses less work to a crash.",
)
def ingest(
    paths: tuple[str, ...],
    db_path: str | None,
    source: str | None,
    keep,
    follow: bool,
    interval: float,
    chunk_lines: int,
) -> None:
    """Index mail logs (rotated and .gz files included) for `whyfailed why`. Resumable:
    run it again and it reads only what is new. SOURCE is a name configured in
    $WHYFAILED_SOURCES or $WHYFAILED_SOURCES_FILE (a file, SSH, journald or syslog source).

    Exit status: 0 when every file was read; 2 when a file named could not be read (missing,
    unreadable, not a file: the others are indexed all the same) or the index cannot be written."""

    from bot.ingest import ingest_paths
    from bot.sources.files import expand, size_of
    from bot.store import Store, StoreError

    path = _store_target(db_path)
    if follow:
        from bot.logsetup import setup_logging

        setup_logging()  # a follower runs for days: its waits and reconnections go to the process log
    try:
        # following, a database that went away is waited for; a one-off run gives up after a minute
        store = Store(path, patience=None if follow else 60.0)
    except StoreError as error:
        _stderr().print(f"error: {error}", markup=False, soft_wrap=True)  # one line, for logs and scripts
        sys.exit(EXIT_USAGE)
    if _configured_names(paths):  # a configured source name (WHYFAILED_SOURCES), not a path
        sys.exit(_ingest_named(paths, path, source, keep, follow, interval, chunk_lines))
    total = sum(size_of(p) for pattern in paths for p in expand(pattern) if p.exists())
    import sqlite3

    try:
        with _ingest_progress(total) as advance:
            stats = ingest_paths(store, list(paths), source, advance, chunk_lines)
    except sqlite3.OperationalError as error:
        # locked by another writer past the timeout, disk full, read-only file: nothing of the
        # chunk in hand was written, and the next run resumes from the last committed one
        _stderr().print(
            f"error: the index {store.where} cannot be written ({error}); what was indexed before is kept, "
            "and the next run resumes from there.",
            markup=False,
        )
        sys.exit(EXIT_USAGE)
    except StoreError as error:  # PostgreSQL stayed away longer than we wait
        _stderr().print(f"error: {error}", markup=False, soft_wrap=True)  # one line, for logs and scripts
        sys.exit(EXIT_USAGE)
    for problem in stats.skipped:
        _stderr().print(f"warning: skipped {problem}", markup=False)
    rate = stats.lines / stats.seconds if stats.seconds else 0
    click.echo(
        f"Indexed {stats.lines} new lines from {stats.files} file(s) in {stats.seconds:.1f} s "
        f"({rate:,.0f} lines/s); {stats.deliveries} stories updated, {stats.unparsed} lines not understood."
    )
    if stats.deferred_indexes:
        click.echo("The index was new: its lookup indexes were built once, after the lines (faster than line by line).")
    if keep is not None:
        click.echo(f"Pruned {store.prune(keep)} stories older than {keep}.")
    if follow:
        from bot.sources.follow import follow_paths

        follow_paths(store, list(paths), source, interval)
    if stats.skipped:  # unreadable input (DESIGN's exit-code contract): the readable files are indexed all the same
        sys.exit(EXIT_USAGE)


def _store_target(db_path: str | None) -> str:
    """--db wins; then DATABASE_URL (or WHYFAILED_DATABASE_URL); then WHYFAILED_DB; then ./whyfailed.db."""
    if db_path:
        return db_path
    from bot.store_location import store_target_from_environment

    # the settings (and pydantic, a quarter of a second) only when a .env file may name it
    target = store_target_from_environment()
    if target is not None:
        return target
    from bot.settings import Settings

    return Settings().store_target


def _configured_files(name: str) -> list[str]:
    """The file patterns of configured source NAME, or a clear exit when it names none."""
    from bot.sources.config import FileSource, SourceConfigError, load_sources

    try:
        source = load_sources().get(name)
    except SourceConfigError as error:
        _stderr().print(f"error: {error}", markup=False)
        sys.exit(EXIT_USAGE)
    if not isinstance(source, FileSource):
        what = "is not a file source" if source else "is not a configured source"
        _stderr().print(f"No index, and {name} {what}: run `whyfailed ingest` first, or give --log LOG.", markup=False)
        sys.exit(EXIT_USAGE)
    return list(source.patterns)


def _configured_names(args: tuple[str, ...]) -> list[str]:
    from bot.sources.configured import sources_may_be_configured

    if not sources_may_be_configured():
        return []
    from bot.sources.config import SourceConfigError, load_sources
    from bot.sources.files import expand

    try:
        return [arg for arg in args if arg in load_sources()]
    except SourceConfigError as error:
        if all(p.exists() for arg in args for p in expand(arg)):  # paths only: still indexed
            _stderr().print(f"warning: {error}", markup=False)
            return []
        _stderr().print(f"error: {error}", markup=False)
        sys.exit(EXIT_USAGE)


def _ingest_named(args, db_path: str, source: str | None, keep, follow: bool, interval: float, chunk_lines: int) -> int:
    """Configured sources by name, side by side; any other argument is a log path, as without names."""
    import logging

    from bot.sources.config import FileSource, load_sources, run_sources
    from bot.store import Store

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    configured = load_sources()
    chosen = {a: configured[a] for a in args if a in configured}
    paths = [a for a in args if a not in configured]
    if paths and source:
        chosen[source] = FileSource(kind="file", path=paths)
    chosen |= {p: FileSource(kind="file", path=p) for p in paths if not source}
    status = run_sources(chosen, db_path, follow, interval, chunk_lines)
    if keep is not None:
        click.echo(f"Pruned {Store(db_path).prune(keep)} stories older than {keep}.")
    return status


@main.command()
@click.option(
    "--db",
    "db_path",
    default=None,
    help="The index /whyfailed ADDRESS reads: a file or a postgresql:// URL (default: $DATABASE_URL, $WHYFAILED_DB).",
)
@click.option(
    "--log", "logs", multiple=True, metavar="PATH", help="Logs /whyfailed ADDRESS scans when there is no index."
)
@RESOLVER_OPTION
def chat(db_path: str | None, logs: tuple[str, ...], resolver: str | None) -> None:
    """Talk to the bot in this terminal: paste a log (end with an empty line, or Ctrl-D), /whyfailed ADDRESS,
    /kb QUERY, /check, /help, /quit. The same answers as in Slack or Discord, with no tokens; the network
    only for /check (live DNS checks)."""
    from bot.adapters.console import run_console
    from bot.conversation import Conversation
    from bot.settings import Settings
    from bot.store_backends import is_postgres_url

    overrides: dict = {"logs": list(logs)} if logs else {}
    if resolver:
        overrides["resolver"] = resolver
    if db_path:  # given on the command line, it wins over DATABASE_URL too
        overrides |= {"database_url": db_path} if is_postgres_url(db_path) else {"db": db_path, "database_url": None}
    sys.exit(run_console(Conversation(Settings(**overrides))))


@main.command()
@click.option("--online", is_flag=True, help="Also try to reach Slack and Discord over the network.")
@click.option("--format", "-f", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
def doctor(online: bool, fmt: str) -> None:
    """Check tokens, database, log sources, grammars and the knowledge base, and say what to fix.
    Exit status 1 when something needs fixing."""
    from bot.doctor import FAIL, OK, WARN, run_doctor

    findings = run_doctor(online=online)
    if fmt == "json":
        click.echo(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        marks = {OK: "[green]✓[/green]", WARN: "[yellow]![/yellow]", FAIL: "[red]✗[/red]"}
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False)

        for item in findings:
            console.print(
                f"{marks.get(item.state, '[dim]-[/dim]')} [bold]{escape(item.area)}[/bold]: "
                f"{escape(item.detail)}" + (f"\n    [dim]fix: {escape(item.fix)}[/dim]" if item.fix else "")
            )
        problems = sum(f.state == FAIL for f in findings)
        console.print(
            f"[red]{problems} problem(s) to fix: see the fix lines above.[/red]"
            if problems
            else "[green]Nothing to fix.[/green]"
        )
    sys.exit(1 if any(f.state == FAIL for f in findings) else 0)


@main.command()
@click.argument("query", required=False)
@click.option(
    "--format", "-f", "fmt", type=click.Choice(("text", "markdown", "json")), default="text", show_default=True
)
def kb(query: str | None, fmt: str) -> None:
    """List the knowledge base, or search it and show the best match for QUERY: words
    ("mailbox full"), a reply or enhanced code (5.2.2) or an article id."""
    from bot.knowledge import load_articles

    articles = load_articles()
    if query is None:
        rows = [(a.id, a.title) for a in articles.values()]
        if fmt == "json":
            click.echo(json.dumps([{"id": i, "title": t} for i, t in rows], indent=2))
        else:
            for article_id, title in rows:
                click.echo(f"{article_id:<24} {title}")
        return
    from bot.kbsearch import search_articles

    matches = search_articles(query)
    found = matches[0] if matches else None
    if found is None:
        _stderr().print(f"No article matches '{query}'. Run `whyfailed kb` for the list.", markup=False)
        sys.exit(EXIT_USAGE)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "id": found.id,
                    "title": found.title,
                    "severity": found.severity,
                    "who_acts": found.who_acts,
                    "next_steps": found.next_steps(),
                    "body": found.body,
                },
                indent=2,
            )
        )
    elif fmt == "markdown":
        click.echo(f"# {found.title}\n\n{found.body}")
    else:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(f"# {found.title}\n\n{found.body}"))


def _serve_group() -> click.Group:
    """`serve` is shared by the chat surfaces: whichever registers first creates it."""
    existing = main.commands.get("serve")
    if isinstance(existing, click.Group):
        return existing

    @main.group()
    def serve() -> None:
        """Long-running processes: the Procfile's web, worker and ingest, or one chat surface (slack, discord)."""

    return serve


@_serve_group().command("slack")
@click.option(
    "--mode",
    type=click.Choice(("http", "socket")),
    default=None,
    help="http: a web process on $PORT that Slack calls (Events API); socket: a worker that connects "
    "out to Slack (Socket Mode, no public URL). Default: $WHYFAILED_SLACK_MODE, else http.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="HTTP mode: the port (default $PORT, else 3000)."
)
@click.option("--host", default="0.0.0.0", show_default=True, help="HTTP mode: the address to listen on.")
def serve_slack(mode: str | None, port: int | None, host: str) -> None:
    """The Slack bot: answers pasted logs in threads, /whyfailed, and the message shortcut.

    Needs SLACK_BOT_TOKEN, and SLACK_SIGNING_SECRET (HTTP) or SLACK_APP_TOKEN (Socket Mode).
    The README's "Slack" section goes from zero to a working bot. GET /healthz answers ok."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from bot.adapters.slack_serve import SlackSetupError, serve
    from bot.adapters.slack_settings import SlackSettings
    from bot.logsetup import setup_logging
    from bot.settings import Settings

    overrides = {name: value for name, value in (("mode", mode), ("port", port)) if value is not None}
    try:
        slack, settings = SlackSettings.load(**overrides), Settings()
    except ValidationError as error:
        for problem in error.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "setting"
            _stderr().print(f"error: {name}: {problem['msg']} (got {problem.get('input')!r})", markup=False)
        sys.exit(EXIT_USAGE)
    except SettingsError as error:  # a list setting that is not JSON, say
        hint = """lists are written as JSON: WHYFAILED_ALLOWED_CHANNELS='["C0123ABCD"]'"""
        _stderr().print(f"error: {error}; {hint}", markup=False)
        sys.exit(EXIT_USAGE)
    setup_logging()
    try:
        serve(slack, settings, host)
    except SlackSetupError as error:
        _stderr().print(f"error: {error}", markup=False)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        pass


@_serve_group().command("discord")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    metavar="ID|NAME",
    help="A help channel, where every pasted log gets an answer (default: $WHYFAILED_DISCORD_CHANNELS).",
)
def serve_discord(channels: tuple[str, ...]) -> None:
    """The Discord bot: answers pasted logs in help channels (and wherever it is mentioned),
    /whyfailed, and the message command "Diagnose delivery problem".

    Needs DISCORD_TOKEN and the Message Content intent. The README's "Discord" section goes
    from zero to a working bot."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from bot.adapters.discord import DiscordSetupError, serve
    from bot.adapters.discord_settings import DiscordSettings
    from bot.logsetup import setup_logging
    from bot.settings import Settings

    try:
        options = DiscordSettings.load(**({"channels": list(channels)} if channels else {}))
        settings = Settings()
    except (ValidationError, SettingsError) as error:
        _stderr().print(f"error: {error}", markup=False)
        sys.exit(EXIT_USAGE)
    setup_logging()
    try:
        serve(options, settings)
    except DiscordSetupError as error:
        _stderr().print(f"error: {error}", markup=False)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        pass


# the Procfile's processes: web, worker, ingest (bot/serve/commands.py)
from bot.serve.commands import serve_ingest, serve_web, serve_worker  # noqa: E402

for _command in (serve_web, serve_worker, serve_ingest):
    _serve_group().add_command(_command)


if __name__ == "__main__":
    main()
