"""Slack's side of the wire, on 127.0.0.1, for tests that run the real bolt app.

- `FakeSlackAPI`: a Web API server (Slack-shaped JSON, bearer tokens, files and their
  downloads, response_url endpoints, upload URLs, apps.connections.open) that records every
  call, keeps uploaded bytes, can answer one call (or one response_url post) with HTTP 429 +
  Retry-After, and can hold response_url posts until the test releases them.
- `SlackSender`: posts events, slash commands and interactive payloads the way Slack does:
  the same content types and field names, signed with v0=HMAC-SHA256("v0:{ts}:{body}").
- `FakeSocketModeServer`: a WebSocket server speaking the Socket Mode envelope protocol.
- `check_blocks`: Block Kit's limits, as Slack enforces them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlparse

WAIT = 15.0  # seconds: the bound on every wait in these tests


@dataclass
class Call:
    method: str  # a Web API method ("chat.postMessage"), or "download", "upload", "response"
    args: dict
    headers: dict
    status: int = 200
    at: float = field(default_factory=time.monotonic)
    path: str = ""


class FakeSlackAPI:
    def __init__(self, bot_token: str, app_token: str = "xapp-1-A0001-fake-app-token"):
        self.bot_token, self.app_token = bot_token, app_token
        self.calls: list[Call] = []
        self.files: dict[str, dict] = {}
        self.contents: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.usergroups: list[dict] = []
        self.ws_url = ""
        self._ts = 1_700_000_000
        self._rate_limited: dict[str, int] = {}
        self._held: dict[str, threading.Event] = {}
        self.holding = 0  # requests waiting behind hold()
        self.uploads: list[bytes] = []
        self._changed = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/"

    @property
    def api_url(self) -> str:
        return self.base_url + "api/"

    def response_url(self, name: str) -> str:
        return f"{self.base_url}response/{name}"

    def add_file(
        self, file_id: str, name: str, content: bytes, mimetype: str = "text/plain", filetype: str = "text"
    ) -> dict:
        self.contents[file_id] = content
        self.files[file_id] = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "size": len(content),
            "mode": "hosted",
            "url_private": f"{self.base_url}files-pri/T0001-{file_id}/{name}",
            "url_private_download": f"{self.base_url}files-pri/T0001-{file_id}/download/{name}",
        }
        return self.files[file_id]

    def rate_limit_next(self, method: str, retry_after: int = 1) -> None:
        """The next call of METHOD (a Web API method, or "response" for response_url) gets a 429."""
        self._rate_limited[method] = retry_after

    def redirect_file(self, file_id: str, location: str) -> None:
        """Downloads of FILE_ID answer 302 to LOCATION, token or not (a CDN hop, or a trick)."""
        self.redirects[file_id] = location

    def hold(self, method: str = "response") -> threading.Event:
        """Keep every call of METHOD ("chat.postMessage", or "response" for response_url) waiting
        until release(METHOD) or the returned event is set: an answer caught in flight. Each call
        that arrives is recorded at once as "METHOD (held)", so a test can wait for it."""
        gate = threading.Event()
        self._held[method] = gate
        return gate

    def release(self, method: str = "response") -> None:
        self._held.pop(method).set()

    def _wait_if_held(self, method: str, args: dict, headers: dict, path: str) -> None:
        gate = self._held.get(method)
        if gate is None:
            return
        self.record(Call(f"{method} (held)", args, headers, status=0, path=path))
        with self._changed:
            self.holding += 1
            self._changed.notify_all()
        gate.wait(4 * WAIT)  # longer than a sender waits: an ack stuck behind this times out and fails
        with self._changed:
            self.holding -= 1

    def record(self, call: Call) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = WAIT):
        """Wait until predicate(calls) is truthy; return its value, or fail with what was seen."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate(list(self.calls))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; calls seen: {[c.method for c in self.calls]}")
                self._changed.wait(left)

    def wait_calls(self, method: str, count: int = 1, timeout: float = WAIT) -> list[Call]:
        """The successful calls of METHOD, once there are at least COUNT of them."""

        def enough(calls: list[Call]) -> list[Call] | None:
            found = [c for c in calls if c.method == method and c.status == 200]
            return found if len(found) >= count else None

        return self.wait_for(enough, timeout)

    def made_all(self) -> list[Call]:
        """Every call Slack answered with 200, in arrival order."""
        return [c for c in list(self.calls) if c.status == 200]

    def made(self, method: str) -> list[Call]:
        return [c for c in list(self.calls) if c.method == method and c.status == 200]

    def next_ts(self) -> str:
        self._ts += 1
        return f"{self._ts}.000100"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the Web API ---------------------------------------------------------------------------

    def answer(self, method: str, args: dict, token: str | None) -> dict:
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://fake.slack.com/",
                "team": "Fake",
                "user": "whyfailed",
                "team_id": "T0001",
                "user_id": "UBOT",
                "bot_id": "BBOT",
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            ts = self.next_ts()
            return {
                "ok": True,
                "channel": args.get("channel"),
                "ts": ts,
                "message": {"ts": ts, "text": args.get("text")},
            }
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.next_ts()}
        if method == "files.info":
            found = self.files.get(args.get("file", ""))
            return {"ok": True, "file": found} if found else {"ok": False, "error": "file_not_found"}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D0001"}}
        if method == "files.getUploadURLExternal":
            return {"ok": True, "upload_url": f"{self.base_url}upload/F0UP", "file_id": "F0UP"}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in json.loads(args["files"])]}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.ws_url}
        if method == "usergroups.list":
            return {"ok": True, "usergroups": self.usergroups}
        return {"ok": False, "error": "unknown_method"}


def _handler(api: FakeSlackAPI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes, content_type="application/json", headers=()) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _args(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            self.raw = raw
            args = dict(parse_qsl(urlparse(self.path).query))
            kind = self.headers.get("Content-Type") or ""
            if "json" in kind and raw:
                args.update(json.loads(raw))
            elif "x-www-form-urlencoded" in kind:
                args.update(parse_qsl(raw.decode()))
            elif raw:
                args["_bytes"] = len(raw)
            return args

        def _token(self, args: dict) -> str | None:
            header = self.headers.get("Authorization") or ""
            return header.removeprefix("Bearer ") if header.startswith("Bearer ") else args.get("token")

        def do_GET(self):
            self._route()

        def do_POST(self):
            self._route()

        def _route(self):
            arrived = time.monotonic()
            path = urlparse(self.path).path
            args, headers = self._args(), dict(self.headers)
            kind = path.split("/")[1]
            method = path[len("/api/") :] if kind == "api" else kind
            if method in api._rate_limited:
                retry_after = api._rate_limited.pop(method)
                api.record(Call(method, args, headers, status=429, path=path, at=arrived))
                body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
                return self._send(429, body, headers=[("Retry-After", str(retry_after))])
            if kind == "api":
                api._wait_if_held(method, args, headers, path)
                answer = api.answer(method, args, self._token(args))
                api.record(Call(method, args, headers, path=path))
                return self._send(200, json.dumps(answer).encode())
            if path.startswith("/files-pri/"):
                file_id = path.split("/")[2].split("-", 1)[1]
                if file_id in api.redirects:
                    api.record(Call("download", args, headers, status=302, path=path))
                    return self._send(302, b"", "text/html", headers=[("Location", api.redirects[file_id])])
                if self._token(args) != api.bot_token:  # what Slack does without the token: a login page
                    api.record(Call("download", args, headers, status=302, path=path))
                    return self._send(302, b"", "text/html", headers=[("Location", "https://fake.slack.com/")])
                api.record(Call("download", args, headers, path=path))
                return self._send(200, api.contents[file_id], "text/plain")
            if path.startswith("/upload/"):
                api.uploads.append(self.raw)
                api.record(Call("upload", args, headers, path=path))
                return self._send(200, f"OK - {args.get('_bytes', 0)}".encode(), "text/plain")
            if path.startswith("/response/"):
                api._wait_if_held("response", args, headers, path)
                api.record(Call("response", args, headers, path=path, at=arrived))
                return self._send(200, b"ok", "text/plain")
            return self._send(404, b"not found", "text/plain")

    return Handler


# --- requests as Slack sends them --------------------------------------------------------------


def signature(secret: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


class SlackSender:
    def __init__(self, url: str, secret: str, api: FakeSlackAPI):
        self.url, self.secret, self.api = url, secret, api
        self._event = 0

    def post(
        self,
        body: str,
        content_type: str,
        headers: dict | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[int, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        sent = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature(secret or self.secret, stamp, body),
            **(headers or {}),
        }
        request = urllib.request.Request(self.url, data=body.encode(), headers=sent, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def event_body(self, event: dict, event_id: str | None = None) -> str:
        self._event += 1
        return json.dumps(
            {
                "token": "legacy-verification-token",
                "team_id": "T0001",
                "api_app_id": "A0001",
                "event": event,
                "type": "event_callback",
                "event_id": event_id or f"Ev{self._event:08d}",
                "event_time": int(time.time()),
                "authorizations": [{"team_id": "T0001", "user_id": "UBOT", "is_bot": True}],
                "is_ext_shared_channel": False,
            }
        )

    def event(self, event: dict, event_id: str | None = None, headers: dict | None = None) -> tuple[int, str]:
        return self.post(self.event_body(event, event_id), "application/json", headers)

    def command_body(self, text: str, user: str = "U0ANNA", channel: str = "C0OPS", name: str = "cmd") -> str:
        return urlencode(self.command_form(text, user, channel, name))

    def command_form(self, text: str, user: str = "U0ANNA", channel: str = "C0OPS", name: str = "cmd") -> dict:
        return {
            "token": "legacy-verification-token",
            "team_id": "T0001",
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "ops",
            "user_id": user,
            "user_name": "anna",
            "command": "/whyfailed",
            "text": text,
            "api_app_id": "A0001",
            "is_enterprise_install": "false",
            "response_url": self.api.response_url(name),
            "trigger_id": "1.2.3",
        }

    def command(self, text: str, user: str = "U0ANNA", channel: str = "C0OPS", name: str = "cmd") -> tuple[int, str]:
        return self.post(self.command_body(text, user, channel, name), "application/x-www-form-urlencoded")

    @staticmethod
    def interactive_body(payload: dict) -> str:
        return urlencode({"payload": json.dumps(payload)})

    def interactive(self, payload: dict) -> tuple[int, str]:
        return self.post(self.interactive_body(payload), "application/x-www-form-urlencoded")


def message_event(text: str, ts: str, channel: str = "C0OPS", user: str = "U0ANNA", **extra) -> dict:
    return {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": "channel",
        "team": "T0001",
        **extra,
    }


def block_action(
    action_id: str,
    value: str,
    message_ts: str,
    api: FakeSlackAPI,
    channel: str = "C0OPS",
    user: str = "U0ANNA",
    ephemeral: bool = False,
    thread_ts: str | None = None,
) -> dict:
    container = {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": ephemeral}
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "anna", "team_id": "T0001"},
        "api_app_id": "A0001",
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": "1.2.3",
        "team": {"id": "T0001", "domain": "fake"},
        "channel": {"id": channel, "name": "ops"},
        "response_url": api.response_url(f"action-{action_id}"),
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "text": {"type": "plain_text", "text": "x"},
                "action_ts": str(time.time()),
            }
        ],
    }
    if not ephemeral:
        payload["message"] = {
            "type": "message",
            "ts": message_ts,
            "thread_ts": thread_ts,
            "text": "...",
            "user": "UBOT",
        }
    return payload


# --- what pasting does to text in Slack ----------------------------------------------------------

_LINKABLE = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}|(?<![\w.@-])(?:[a-z0-9-]+\.)+(?:com|net|org)(?![\w.-])"


def slackify(text: str, fenced: bool = True) -> str:
    """What Slack's client sends for a paste: & < > escaped, addresses and host names turned into
    <mailto:...|...> and <http://...|...> links, and the ``` fences of a code block kept."""
    import re

    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def link(match: re.Match) -> str:
        word = match.group(0)
        return f"<mailto:{word}|{word}>" if "@" in word else f"<http://{word}|{word}>"

    linked = re.sub(_LINKABLE, link, escaped)
    return f"```{linked}```" if fenced else linked


# --- Block Kit's limits ----------------------------------------------------------------------------

BLOCK_TYPES = {"section", "actions", "context", "header", "divider", "image", "rich_text", "input", "file"}


def check_blocks(blocks: list[dict]) -> list[str]:
    """Every limit Slack would refuse a message for (https://api.slack.com/reference/block-kit)."""
    problems = []
    if not 0 < len(blocks) <= 50:
        problems.append(f"{len(blocks)} blocks (1..50 allowed)")
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    if len(ids) != len(set(ids)):
        problems.append("duplicate block_id")
    for n, block in enumerate(blocks):
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            problems.append(f"block {n}: unknown type {kind}")
        if kind == "section":
            text = block.get("text") or {}
            if text.get("type") not in ("mrkdwn", "plain_text") or not 0 < len(text.get("text", "")) <= 3000:
                problems.append(f"block {n}: section text of {len(text.get('text', ''))} chars")
        if kind == "header":
            text = block["text"]
            if text["type"] != "plain_text" or not 0 < len(text["text"]) <= 150:
                problems.append(f"block {n}: header text")
        if kind == "context" and not 0 < len(block["elements"]) <= 10:
            problems.append(f"block {n}: context elements")
        if kind == "context":
            problems += [f"block {n}: context text" for e in block["elements"] if len(e.get("text", "")) > 3000]
        if kind == "actions":
            elements = block["elements"]
            if not 0 < len(elements) <= 25:
                problems.append(f"block {n}: {len(elements)} actions")
            action_ids = [e["action_id"] for e in elements]
            if len(action_ids) != len(set(action_ids)):
                problems.append(f"block {n}: duplicate action_id")
            for e in elements:
                if e["type"] != "button" or not 0 < len(e["text"]["text"]) <= 75 or e["text"]["type"] != "plain_text":
                    problems.append(f"block {n}: button text")
                if len(e.get("value", "")) > 2000 or len(e["action_id"]) > 255:
                    problems.append(f"block {n}: button value or action_id too long")
    return problems


def mrkdwn_objects(blocks: list[dict]) -> list[dict]:
    """Every mrkdwn text object a message carries (what Slack would parse for mentions)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def texts(blocks: list[dict]) -> list[str]:
    """Every mrkdwn string a message carries."""
    return [item["text"] for item in mrkdwn_objects(blocks)]


# --- Socket Mode ----------------------------------------------------------------------------------


def events_envelope(api: FakeSlackAPI, event: dict, envelope_id: str, event_id: str) -> dict:
    """A Socket Mode envelope for an Events API event, shaped as Slack shapes it."""
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
        "payload": json.loads(SlackSender("", "", api).event_body(event, event_id)),
    }


class FakeSocketModeServer:
    """Says hello, sends its envelopes, and records what the app sends back (the acks)."""

    def __init__(self, envelopes: list[dict]):
        self.envelopes = envelopes
        self.received: list[dict] = []
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT), "the WebSocket server did not start"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket=fake-ticket&app_id=A0001"

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        async with serve(self._session, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _session(self, websocket) -> None:
        hello = {
            "type": "hello",
            "num_connections": 1,
            "connection_info": {"app_id": "A0001"},
            "debug_info": {"host": "fake", "build_number": 1, "approximate_connection_time": 3600},
        }
        await websocket.send(json.dumps(hello))
        for envelope in self.envelopes:
            await websocket.send(json.dumps(envelope))
        async for message in websocket:
            with self._changed:
                self.received.append(json.loads(message))
                self._changed.notify_all()

    def wait_ack(self, envelope_id: str, timeout: float = WAIT) -> dict:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self.received:
                    if message.get("envelope_id") == envelope_id:
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no ack for {envelope_id}; received {self.received}")
                self._changed.wait(left)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT)
