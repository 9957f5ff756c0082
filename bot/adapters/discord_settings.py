"""Discord credentials and serving options.

The token keeps the name discord.py's examples and most hosting guides use (DISCORD_TOKEN),
which is also what `whyfailed doctor` checks; our own choices are prefixed WHYFAILED_DISCORD_.
Lists read as comma-separated text (`WHYFAILED_DISCORD_CHANNELS=help-mail,1234567890`), the
way people write them in a .env file; a JSON list works too.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# three dot-separated base64url parts: the same shape `whyfailed doctor` checks
_TOKEN = re.compile(r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}")

Names = Annotated[list[str], NoDecode]


class DiscordSettings(BaseSettings):
    # no populate_by_name: pydantic-settings would then also read a stray TOKEN or CHANNELS variable
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    token: str = Field("", validation_alias="DISCORD_TOKEN")
    channels: Names = Field(
        default_factory=list,
        validation_alias="WHYFAILED_DISCORD_CHANNELS",
        description="Help channels (ids or names): every pasted log there gets an answer.",
    )
    guilds: Names = Field(
        default_factory=list,
        validation_alias="WHYFAILED_DISCORD_GUILDS",
        description="Server ids to register the commands in at once (global registration otherwise).",
    )
    sync_commands: bool = Field(True, validation_alias="WHYFAILED_DISCORD_SYNC_COMMANDS")
    max_attachment_bytes: int = Field(8_000_000, ge=1, validation_alias="WHYFAILED_DISCORD_MAX_ATTACHMENT_BYTES")
    # Discord's REST API and gateway; another value for a proxy or a test double
    api_url: str = Field("https://discord.com/api/v10", validation_alias="WHYFAILED_DISCORD_API_URL")
    gateway_url: str = Field("", validation_alias="WHYFAILED_DISCORD_GATEWAY_URL")
    article_url: str = Field(
        "", validation_alias="WHYFAILED_DISCORD_ARTICLE_URL", description="Where articles are published, if anywhere."
    )

    @classmethod
    def load(cls, **overrides) -> DiscordSettings:
        """The environment, with some fields given by name: load(channels=["help-mail"])."""
        return cls(**{cls.model_fields[name].validation_alias: value for name, value in overrides.items()})

    @field_validator("token")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()  # a pasted secret often brings a newline along
        return value.removeprefix("Bot ").strip()  # and sometimes the header's scheme

    @field_validator("channels", "guilds", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = json.loads(text)
            else:
                value = text.split(",")
        return [str(item).strip().lstrip("#") for item in value if str(item).strip()]

    def problems(self) -> list[str]:
        """What keeps the bot from starting, each said so a person can fix it."""
        found = []
        if not self.token:
            found.append(
                "DISCORD_TOKEN is not set: in the Discord Developer Portal, open your application > Bot > "
                "Reset Token, and put the token in DISCORD_TOKEN (see the README's Discord section)."
            )
        elif not _TOKEN.fullmatch(self.token):
            found.append(
                "DISCORD_TOKEN does not look like a bot token (three dot-separated parts, from the Developer "
                "Portal's Bot page; the application id or the client secret will not work here)."
            )
        bad = [g for g in self.guilds if not g.isdigit()]
        if bad:
            found.append(f"WHYFAILED_DISCORD_GUILDS takes server ids (numbers), not {', '.join(bad)}.")
        return found

    def is_help_channel(self, channel_id: int | None, name: str | None) -> bool:
        return (channel_id is not None and str(channel_id) in self.channels) or (
            name is not None and name in self.channels
        )
