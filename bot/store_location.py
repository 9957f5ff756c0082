"""Where the index is, read from the environment without loading the settings: importing
pydantic costs a quarter of a second, half of a `whyfailed why ADDRESS` run. The same answer
as Settings().store_target (bot/settings.py) whenever there is no .env file for the settings
to read as well; tests/test_store_location.py holds the two equal."""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_DB = "whyfailed.db"  # Settings.db's default
_URL_NAMES = ("whyfailed_database_url", "database_url")  # Settings.database_url's names, first wins
_DB_NAME = "whyfailed_db"  # Settings.db's name (env_prefix WHYFAILED_)


def store_target_from_environment(environ: Mapping[str, str] = os.environ) -> str | None:
    """Settings().store_target, or None when a .env file (in the current folder, where the
    settings look for it) may say otherwise. Names are matched without case, as the settings
    match them."""
    if os.path.exists(".env"):
        return None
    lowered = {name.lower(): value for name, value in environ.items()}
    url = next((lowered[name] for name in _URL_NAMES if name in lowered), None)
    return url or lowered.get(_DB_NAME, DEFAULT_DB)
