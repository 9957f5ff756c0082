"""One settings object for every process, from environment variables (WHYFAILED_*) and .env."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WHYFAILED_", env_file=".env", extra="ignore")

    db: str = Field("whyfailed.db", description="The SQLite index (ingest writes it, /whyfailed reads it).")
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

    @property
    def store_target(self) -> str:
        """Where the index is: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.database_url or self.db


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
