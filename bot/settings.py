"""One settings object for every process, from environment variables (WHYFAILED_*) and .env.

The chat credentials live in their own classes (bot/adapters/slack_settings.py and
discord_settings.py) because they keep the names Slack's and Discord's docs use (SLACK_BOT_TOKEN,
DISCORD_TOKEN, PORT); they read the same environment and the same .env. `SETTINGS_MODELS` lists
every class, so `.env.example` and its test cover them all.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.store_location import DEFAULT_DB


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WHYFAILED_", env_file=".env", extra="ignore")

    db: str = Field(DEFAULT_DB, description="The SQLite index (ingest writes it, /whyfailed reads it).")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("WHYFAILED_DATABASE_URL", "DATABASE_URL", "database_url"),
        description=(
            "A shared PostgreSQL index instead of the SQLite file, as postgresql://user:password@host:5432/dbname. "
            "Read from WHYFAILED_DATABASE_URL or, as hosting platforms name it, DATABASE_URL; when set, it wins "
            "over WHYFAILED_DB."
        ),
    )
    logs: list[str] = Field(
        default_factory=list, description="Logs /whyfailed scans when there is no index: paths or globs."
    )
    allowed_channels: list[str] = Field(
        default_factory=list, description="Channels where /whyfailed ADDRESS may show log data."
    )
    allowed_users: list[str] = Field(
        default_factory=list, description="Users (or groups) who may run /whyfailed ADDRESS anywhere."
    )
    redact_local_parts: bool = Field(False, description="Show j***@example.org instead of addresses in replies.")
    max_paste_bytes: int = Field(1_000_000, description="The most of a pasted log or file a chat message may feed in.")
    max_results: int = Field(5, description="Stories shown per /whyfailed ADDRESS.")
    # read by bot/sources/config.py (load_sources), listed here so one object documents them all
    sources: str | None = Field(None, description="Named log sources, as JSON: {name: {kind, ...}}.")
    sources_file: str | None = Field(None, description="A .toml, .yaml or .json file of named sources instead.")
    resolver: str | None = Field(None, description="The DNS resolver live checks ask, IP[:PORT].")
    dnsbl_zones: str | None = Field(None, description="Blocklist zones the live checks query, comma-separated.")
    check_rate: int = Field(
        5, ge=1, le=120, description="Live checks one person may ask for in chat per minute (one at a time)."
    )
    cache_dir: str | None = Field(None, description="Where compiled grammars are cached.")
    # the long-running processes (Procfile)
    shutdown_grace: float = Field(
        25.0, gt=0, le=600, description="Seconds a process may take to finish its work after SIGTERM."
    )
    # diagnosing is CPU work under one GIL: more threads than cores only slow the acks down
    # (benchmarks/bench_slack_load.py, 200 requests on 2 cores: p50 ack 0.7 s with 2, 1.6 s with 8)
    listener_threads: int = Field(
        2, ge=1, le=256, description="Slack answers worked on at once (the rest wait their turn)."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="worker and ingest: serve /metrics on this port (web serves it on $PORT)."
    )
    metrics_token: str | None = Field(None, description="If set, /metrics asks for 'Authorization: Bearer TOKEN'.")
    log_level: str = Field("info", pattern="(?i)^(debug|info|warning|error)$", description="Process log level.")

    @property
    def store_target(self) -> str:
        """Where the index is: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.database_url or self.db


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)


def settings_models() -> list[type[BaseSettings]]:
    """Every settings class a process reads, for .env.example's test and `whyfailed doctor`."""
    from bot.adapters.discord_settings import DiscordSettings
    from bot.adapters.slack_settings import SlackSettings

    return [Settings, SlackSettings, DiscordSettings]


def env_names(model: type[BaseSettings]) -> dict[str, tuple[str, ...]]:
    """field name -> the environment variable names that set it."""
    from pydantic import AliasChoices

    prefix = model.model_config.get("env_prefix") or ""
    names = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            names[name] = (alias,)
        elif isinstance(alias, AliasChoices):
            names[name] = tuple(str(choice) for choice in alias.choices if isinstance(choice, str))
        else:
            names[name] = ((prefix + (info.alias or name)).upper(),)
    return names
