"""Find the data that ships with the bot: grammars, knowledge articles, code tables.

In a wheel they live in bot/_data/ (see pyproject's force-include); in a checkout or an
editable install they are the top-level grammar/ and knowledge/ folders people edit.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"whyfailed's {name}/ folder is missing from this installation ({installed})")


def grammar_dir() -> Path:
    return data_dir("grammar")


def knowledge_dir() -> Path:
    return data_dir("knowledge")


def package_data(name: str) -> Path:
    return _PACKAGE / "data" / name
