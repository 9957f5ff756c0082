"""bot/sources/configured.py: an ingest of plain paths skips loading the sources'
configuration only when that configuration could name no source."""

from __future__ import annotations

import json
import os

import pytest

from bot.sources.config import load_sources
from bot.sources.configured import sources_may_be_configured

NAMES = ("WHYFAILED_SOURCES", "whyfailed_sources", "WHYFAILED_SOURCES_FILE", "Whyfailed_Sources_File")


@pytest.fixture
def clean(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in list(os.environ):
        if name.lower().startswith("whyfailed_sources"):
            monkeypatch.delenv(name)
    return monkeypatch


def _values(tmp_path):
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"mx1": {"kind": "file", "path": "/var/log/mail.log"}}))
    return {"WHYFAILED_SOURCES": ["", sources.read_text()], "WHYFAILED_SOURCES_FILE": ["", str(sources)]}


def test_no_means_load_sources_finds_none_in_every_environment(clean, tmp_path):
    values = _values(tmp_path)
    environments = [{}] + [{name: value} for name in NAMES for value in values[name.upper()]]
    said_yes = 0
    for environment in environments:
        for name, value in environment.items():
            clean.setenv(name, value)
        if sources_may_be_configured():
            said_yes += 1
            assert set(load_sources()) == {"mx1"}, environment  # it was right to look
        else:
            assert load_sources() == {}, environment
        for name in environment:
            clean.delenv(name)
    assert said_yes == 4  # each name, in either case, with a value


def test_a_env_file_may_name_sources(clean, tmp_path):
    (tmp_path / ".env").write_text(f"WHYFAILED_SOURCES_FILE={tmp_path / 'sources.json'}\n")
    _values(tmp_path)
    assert sources_may_be_configured()
    assert "mx1" in load_sources()


def test_ingest_of_a_path_does_not_load_the_sources_configuration(clean, tmp_path):
    import subprocess
    import sys

    from .conftest import FIXTURES

    log = FIXTURES / "postfix" / "deferred-then-bounced.log"
    probe = (
        "import sys; from bot.cli import main\n"
        "try:\n"
        f"    main(['ingest', {str(log)!r}, '--db', {str(tmp_path / 'i.db')!r}])\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "print(sorted(m for m in sys.modules if m in ('bot.sources.config', 'pydantic', 'yaml')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
