"""The `whyfailed serve web|worker|ingest` commands (the Procfile's processes): each loads its
settings, says what to fix if they are wrong, and hands over to bot/serve/{web,worker,ingest}.py."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # bot.cli imports these commands at start: `why --format json` never needs rich
    from rich.console import Console

EXIT_USAGE = 2


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _settings_or_exit(*factories):
    """Each settings class, loaded; a setting that does not validate ends the command with exit 2."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return [factory() for factory in factories]
    except ValidationError as error:
        for problem in error.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "setting"
            _stderr().print(f"error: {name}: {problem['msg']} (got {problem.get('input')!r})", markup=False)
    except SettingsError as error:  # a list setting that is not JSON, say
        hint = """lists are written as JSON: WHYFAILED_ALLOWED_CHANNELS='["C0123ABCD"]'"""
        _stderr().print(f"error: {error}; {hint}", markup=False)
    sys.exit(EXIT_USAGE)


def _setup_failed(error: Exception):
    _stderr().print(f"error: {error}", markup=False)
    sys.exit(EXIT_USAGE)


@click.command("web")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="The port to listen on (default $PORT, else 3000)."
)
@click.option("--host", default="0.0.0.0", show_default=True, help="The address to listen on.")
def serve_web(port: int | None, host: str) -> None:
    """The Procfile's web process: Slack in HTTP mode (POST /slack/events), GET /healthz and
    GET /metrics (Prometheus) on $PORT. Stops cleanly on SIGTERM: requests and answers in flight
    finish within WHYFAILED_SHUTDOWN_GRACE seconds, then exit 0."""
    from bot.adapters.slack_settings import SlackSettings
    from bot.logsetup import setup_logging
    from bot.serve.shutdown import Shutdown
    from bot.serve.web import run_web
    from bot.settings import Settings

    overrides = {"mode": "http", **({"port": port} if port is not None else {})}
    slack, settings = _settings_or_exit(lambda: SlackSettings.load(**overrides), Settings)
    if problems := slack.problems():
        _setup_failed(Exception("\n".join(problems)))
    setup_logging(settings.log_level)
    shutdown = Shutdown("web", settings.shutdown_grace).install()
    try:
        sys.exit(run_web(slack, settings, host, shutdown))
    except OSError as error:  # the port is taken, or not ours to bind
        _setup_failed(Exception(f"cannot listen on {host}:{slack.port} ({error.strerror or error})."))


@click.command("worker")
def serve_worker() -> None:
    """The Procfile's worker process: Slack in Socket Mode (when SLACK_APP_TOKEN is set) and the
    Discord gateway (when DISCORD_TOKEN is set), both in one process if both are. Stops cleanly
    on SIGTERM. Set WHYFAILED_METRICS_PORT for GET /metrics."""
    from bot.adapters.discord_settings import DiscordSettings
    from bot.adapters.slack_settings import SlackSettings
    from bot.logsetup import setup_logging
    from bot.serve.metrics import serve_metrics
    from bot.serve.shutdown import Shutdown
    from bot.serve.worker import WorkerSetupError, check, run_worker
    from bot.settings import Settings

    slack, discord, settings = _settings_or_exit(SlackSettings, DiscordSettings, Settings)
    try:
        check(slack, discord)
    except WorkerSetupError as error:
        _setup_failed(error)
    setup_logging(settings.log_level)
    serve_metrics(settings.metrics_port)
    shutdown = Shutdown("worker", settings.shutdown_grace).install()
    try:
        sys.exit(run_worker(slack, discord, settings, shutdown))
    except WorkerSetupError as error:
        _setup_failed(error)


@click.command("ingest")
@click.option(
    "--interval", type=click.FloatRange(0.05, 60), default=1.0, show_default=True, help="Seconds between reads."
)
@click.option(
    "--chunk-lines",
    type=click.IntRange(100, 1_000_000),
    default=2000,
    show_default=True,
    help="Lines per transaction: a stop waits for at most one chunk.",
)
def serve_ingest(interval: float, chunk_lines: int) -> None:
    """The Procfile's ingest process: follow every configured source (WHYFAILED_SOURCES or
    WHYFAILED_SOURCES_FILE) into the index. On SIGTERM the chunk in hand is written with its
    position, and the next start resumes at the next line. Set WHYFAILED_METRICS_PORT for GET /metrics."""
    from bot.logsetup import setup_logging
    from bot.serve.ingest import IngestSetupError, configured_sources, run_ingest
    from bot.serve.metrics import serve_metrics
    from bot.serve.shutdown import Shutdown
    from bot.settings import Settings

    [settings] = _settings_or_exit(Settings)
    try:
        sources = configured_sources()
    except IngestSetupError as error:
        _setup_failed(error)
    setup_logging(settings.log_level)
    logging_quiet()
    serve_metrics(settings.metrics_port)
    shutdown = Shutdown("ingest", settings.shutdown_grace).install()
    sys.exit(run_ingest(sources, settings, shutdown, interval, chunk_lines))


def logging_quiet() -> None:
    import logging

    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one line per packet at info
