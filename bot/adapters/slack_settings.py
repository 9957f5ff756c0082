"""Slack credentials and serving options.

The token variables keep the names Slack's own docs, CLI and bolt use (SLACK_BOT_TOKEN,
SLACK_SIGNING_SECRET, SLACK_APP_TOKEN), and PORT is what hosting platforms set, so an app
configured by Slack's tutorials works unchanged. Only our own choice is prefixed:
WHYFAILED_SLACK_MODE.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# the same shapes `whyfailed doctor` checks
_BOT_TOKEN = re.compile(r"xoxb-[0-9A-Za-z-]{10,}")
_APP_TOKEN = re.compile(r"xapp-[0-9A-Za-z-]{10,}")
_SECRET = re.compile(r"[0-9a-f]{32}")


class SlackSettings(BaseSettings):
    # no populate_by_name: with it, pydantic-settings would also read a stray MODE or BOT_TOKEN
    # variable; code passes field names through `load` instead
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    bot_token: str = Field("", validation_alias="SLACK_BOT_TOKEN")
    signing_secret: str = Field("", validation_alias="SLACK_SIGNING_SECRET")
    app_token: str = Field("", validation_alias="SLACK_APP_TOKEN")
    mode: Literal["http", "socket"] = Field("http", validation_alias="WHYFAILED_SLACK_MODE")
    port: int = Field(3000, ge=1, le=65535, validation_alias="PORT")
    # Slack's Web API; another value for GovSlack (https://slack-gov.com/api/) or a test double
    api_url: str = Field("https://slack.com/api/", validation_alias="WHYFAILED_SLACK_API_URL")

    @classmethod
    def load(cls, **overrides) -> SlackSettings:
        """The environment, with some fields given by name: load(mode="socket", port=8080)."""
        return cls(**{cls.model_fields[name].validation_alias: value for name, value in overrides.items()})

    @field_validator("bot_token", "signing_secret", "app_token")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()  # a pasted secret often brings a newline along

    def problems(self) -> list[str]:
        """What keeps the bot from starting in its mode, each said so a person can fix it."""
        found = []
        token = self.bot_token
        if not token:
            found.append(
                "SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-...) from OAuth & Permissions."
            )
        elif not _BOT_TOKEN.fullmatch(token):
            found.append(
                "SLACK_BOT_TOKEN does not look like a bot token: it starts with xoxb- "
                "(an xoxp- user token or an xapp- app token will not work here)."
            )
        if self.mode == "http":
            secret = self.signing_secret
            if not secret:
                found.append(
                    "SLACK_SIGNING_SECRET is not set: copy the Signing Secret from Basic Information "
                    "(or run in Socket Mode: --mode socket with SLACK_APP_TOKEN)."
                )
            elif not _SECRET.fullmatch(secret):
                found.append(
                    "SLACK_SIGNING_SECRET does not look like a signing secret (32 hexadecimal digits, "
                    "from Basic Information > App Credentials)."
                )
        else:
            app = self.app_token
            if not app:
                found.append(
                    "SLACK_APP_TOKEN is not set: Socket Mode needs an app-level token (xapp-...) with the "
                    "connections:write scope, from Basic Information > App-Level Tokens."
                )
            elif not _APP_TOKEN.fullmatch(app):
                found.append("SLACK_APP_TOKEN does not look like an app-level token: it starts with xapp-.")
        return found
