"""Configuration: every setting of every settings class is documented in .env.example, and the
example, uncommented, is a .env the processes load. The comparison is made from the pydantic
models' fields, so a setting added later (e.g. a database URL) makes this test name it."""

from __future__ import annotations

import re

import pytest

from bot.settings import env_names, settings_models

from .conftest import REPO

EXAMPLE = REPO / ".env.example"
_ENTRY = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
# planned (DESIGN.md "Deployment") and documented ahead of the code that reads it
_DOCUMENTED_AHEAD = {"DATABASE_URL", "WHYFAILED_DATABASE_URL"}


def _entries() -> dict[str, tuple[str, str]]:
    """variable -> (its example value, the comment line above it)"""
    lines = EXAMPLE.read_text().splitlines()
    found = {}
    for number, line in enumerate(lines):
        match = _ENTRY.match(line)
        if match:
            above = lines[number - 1] if number else ""
            found[match.group(1)] = (match.group(2), above)
    return found


def _fields() -> dict[str, tuple[str, ...]]:
    return {
        f"{model.__name__}.{name}": names for model in settings_models() for name, names in env_names(model).items()
    }


def test_every_setting_is_in_env_example():
    documented = _entries()
    missing = [
        f"{field} ({' or '.join(names)})" for field, names in _fields().items() if not set(names) & set(documented)
    ]
    assert not missing, f"add these to .env.example, each with a comment: {missing}"


def test_env_example_names_no_setting_that_does_not_exist():
    known = {name for names in _fields().values() for name in names}
    stale = set(_entries()) - known - _DOCUMENTED_AHEAD
    assert not stale, f".env.example documents settings nothing reads: {sorted(stale)}"


def test_every_entry_has_its_own_comment():
    for name, (_, above) in _entries().items():
        assert above.startswith("#") and not _ENTRY.match(above), f"{name} has no comment line above it"


def test_the_example_uncommented_is_a_working_env_file(tmp_path, monkeypatch):
    for names in _fields().values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    entries = {k: v for k, v in _entries().items() if k not in _DOCUMENTED_AHEAD or _known(k)}
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, (value, _) in entries.items()))
    monkeypatch.chdir(tmp_path)
    loaded = {model.__name__: model() for model in settings_models()}
    assert loaded["Settings"].allowed_users == ["U0123ABCD", "S0MAILOPS"]
    assert loaded["Settings"].shutdown_grace == 25 and loaded["Settings"].metrics_port == 9102
    assert loaded["SlackSettings"].bot_token.startswith("xoxb-") and loaded["SlackSettings"].port == 3000
    assert loaded["DiscordSettings"].channels == ["help-mail", "123456789012345678"]
    # the example tokens have the right shapes, so a copy shows what a good value looks like
    assert loaded["SlackSettings"].model_copy(update={"mode": "socket"}).problems() == []
    assert loaded["SlackSettings"].problems() == [] and loaded["DiscordSettings"].problems() == []


def _known(name: str) -> bool:
    return any(name in names for names in _fields().values())


@pytest.mark.parametrize("model", settings_models(), ids=lambda m: m.__name__)
def test_every_settings_class_reads_the_same_dotenv(model):
    assert model.model_config.get("env_file") == ".env"


def test_an_environment_variable_wins_over_dotenv(tmp_path, monkeypatch):
    from bot.settings import Settings

    (tmp_path / ".env").write_text("WHYFAILED_MAX_RESULTS=7\nWHYFAILED_DB=from-dotenv.db\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WHYFAILED_MAX_RESULTS", raising=False)
    monkeypatch.setenv("WHYFAILED_DB", "from-env.db")
    settings = Settings()
    assert settings.max_results == 7 and settings.db == "from-env.db"
