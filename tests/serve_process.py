"""A `whyfailed serve ...` process for tests and the load benchmark: started for real, its JSON
log lines collected as they come, stopped with SIGTERM as a platform would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WAIT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**extra) -> dict:
    """This environment without any Slack/Discord/whyfailed setting, so only the test's count."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "WHYFAILED_", "DISCORD_")) and k not in ("PORT", "DATABASE_URL")
    }
    return {**env, "PYTHONUTF8": "1", "PYTHONPATH": str(REPO), **extra}


class ServeProcess:
    def __init__(self, args: list[str], env: dict, cwd: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.process.stderr:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    def events(self) -> list[dict]:
        found = []
        for line in list(self.lines):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def wait_event(self, message: str, timeout: float = WAIT) -> dict:
        """The first structured log line with this message, once it is there."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for entry in self.events():
                    if entry.get("message") == message:
                        return entry
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and self.lines and self.lines[-1] == ""):
                    raise AssertionError(f"no '{message}' log line; stderr was:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 0.5))

    def wait_http(self, url: str, timeout: float = WAIT) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    return answer.status, answer.read()
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{url} never answered; stderr was:\n" + "\n".join(self.lines))

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = WAIT * 2) -> int:
        return self.process.wait(timeout)

    def stderr(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)


def start_web(folder: Path, bot_token: str, secret: str, api_url: str, **settings) -> tuple[ServeProcess, int]:
    """`whyfailed serve web` on a free loopback port, pointed at a local Slack Web API, with the
    allowed channel the Slack fakes use; SETTINGS are more environment (the database, threads).
    Returns once /healthz answers."""
    port = free_port()
    env = clean_env(
        SLACK_BOT_TOKEN=bot_token,
        SLACK_SIGNING_SECRET=secret,
        PORT=str(port),
        WHYFAILED_SLACK_API_URL=api_url,
        WHYFAILED_ALLOWED_CHANNELS='["C0OPS"]',
        **settings,
    )
    process = ServeProcess(["web", "--host", "127.0.0.1"], env, folder)
    try:
        process.wait_http(f"http://127.0.0.1:{port}/healthz")
    except AssertionError:
        process.kill()
        raise
    return process, port
