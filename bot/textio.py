"""Read input the way a hostile paste deserves: bounded in size, decoded without
surprises, binary refused with a clear message."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_INPUT_BYTES = 10 * 1024 * 1024  # more than a paste needs; whole logs go through `whyfailed ingest`
MAX_LINE_CHARS = 16 * 1024  # longer lines are cut: no mail log line is that long
BINARY_SAMPLE = 8192


class InputError(Exception):
    """Input we cannot read: the message says what was wrong and what to do."""


@dataclass
class InputText:
    """One input, decoded: its name, its text, and notes on how it was read (truncated, say)."""

    name: str
    text: str
    notes: list[str] = field(default_factory=list)


def _looks_binary(sample: bytes) -> bool:
    if b"\x00" in sample:
        return True
    if not sample:
        return False
    control = sum(1 for byte in sample if byte < 9 or 13 < byte < 32)
    return control / len(sample) > 0.1


def decode_input(data: bytes, name: str, truncated: bool = False, limit: int = MAX_INPUT_BYTES) -> InputText:
    notes = []
    if data.startswith(b"\x1f\x8b"):
        raise InputError(f"{name}: this is gzip-compressed; run `zcat {name} | whyfailed diagnose -`.")
    if _looks_binary(data[:BINARY_SAMPLE]):
        raise InputError(f"{name}: this looks like binary data, not a mail log or a bounce message.")
    if truncated:
        notes.append(f"Only the first {limit // (1024 * 1024)} MB were read; use `whyfailed ingest` for whole logs.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        notes.append("The input is not valid UTF-8; undecodable bytes are shown as \ufffd.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    long_lines = [i for i, line in enumerate(lines) if len(line) > MAX_LINE_CHARS]
    if long_lines:
        for i in long_lines:
            lines[i] = lines[i][:MAX_LINE_CHARS]
        text = "\n".join(lines)
        notes.append(f"{len(long_lines)} line(s) longer than {MAX_LINE_CHARS} characters were cut.")
    return InputText(name, text, notes)


def read_input(path: str, limit: int = MAX_INPUT_BYTES) -> InputText:
    """Read a file path, or standard input for '-'."""
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1)
        name = "<stdin>"
    else:
        target = Path(path)
        if target.is_dir():
            raise InputError(f"{path}: is a folder; give a log file or a saved bounce message.")
        try:
            with open(target, "rb") as handle:
                data = handle.read(limit + 1)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file.") from None
        except PermissionError:
            raise InputError(f"{path}: permission denied; run as a user who may read it.") from None
        except OSError as error:
            raise InputError(f"{path}: cannot be read ({error.strerror or error}).") from None
        name = path
    truncated = len(data) > limit
    if truncated:
        # Cut at the last whole line, so that no half line is diagnosed.
        data = data[:limit]
        data = data[: data.rfind(b"\n") + 1] or data
    return decode_input(data, name, truncated, limit)
