"""bot/store_location.py finds the index where the settings would, without loading them."""

from __future__ import annotations

import itertools

import pytest

from bot.settings import Settings
from bot.store_location import store_target_from_environment

# the names the settings read the index's place from, in the cases people write them
NAMES = ("WHYFAILED_DB", "WHYFAILED_DATABASE_URL", "DATABASE_URL", "database_url", "whyfailed_db")
VALUES = ("", "other.db", "postgresql://u:p@db.example:5432/idx")


def _environments():
    yield {}
    for name, value in itertools.product(NAMES, VALUES):
        yield {name: value}
    for (a, b), (x, y) in itertools.product(itertools.combinations(NAMES, 2), itertools.product(VALUES, repeat=2)):
        if a.lower() != b.lower():  # (one name in two cases with two values: no one writes that)
            yield {a: x, b: y}


@pytest.fixture
def clean(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in list(__import__("os").environ):
        if name.lower() in {n.lower() for n in NAMES}:
            monkeypatch.delenv(name)
    return monkeypatch


def test_the_index_is_where_the_settings_say_for_every_environment(clean):
    checked = 0
    for environment in _environments():
        for name, value in environment.items():
            clean.setenv(name, value)
        assert store_target_from_environment() == Settings().store_target, environment
        for name in environment:
            clean.delenv(name)
        checked += 1
    assert checked > 80


def test_with_a_env_file_the_settings_are_asked(clean, tmp_path):
    (tmp_path / ".env").write_text("WHYFAILED_DB=from-dotenv.db\n")
    assert store_target_from_environment() is None
    assert Settings().store_target == "from-dotenv.db"  # what the command then uses


def test_why_finds_the_index_of_whyfailed_db_without_the_settings(tmp_path, run_cli):
    from bot.ingest import ingest_paths
    from bot.store import Store

    from .conftest import FIXTURES

    ingest_paths(Store(tmp_path / "named.db"), [str(FIXTURES / "postfix" / "deferred-then-bounced.log")])
    done = run_cli("why", "ops@slow.example.net", env={"WHYFAILED_DB": str(tmp_path / "named.db")}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert "ops@slow.example.net — bounced" in done.stdout.decode()
    done = run_cli("why", "ops@slow.example.net", env={"WHYFAILED_DB": str(tmp_path / "absent.db")}, cwd=tmp_path)
    assert done.returncode == 2 and f"No index at {tmp_path / 'absent.db'}" in done.stderr.decode()
