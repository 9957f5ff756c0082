"""Whether any named log source may be configured, told from the environment alone: loading
the sources' configuration imports pydantic, pydantic-settings and PyYAML (0.3 s), which an
`ingest` of plain paths, the usual run, has no use for. tests/test_sources_configured.py
holds this to load_sources (bot/sources/config.py): when it says no, that finds none."""

from __future__ import annotations

import os
from collections.abc import Mapping

# load_sources' settings (env_prefix WHYFAILED_, names matched without case); an empty value is none
_NAMES = ("whyfailed_sources", "whyfailed_sources_file")


def sources_may_be_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """False only when load_sources() would find no source: neither variable is set, and
    there is no .env file (in the current folder, where the settings look) to set one."""
    if os.path.exists(".env"):
        return True
    return any(value and name.lower() in _NAMES for name, value in environ.items())
