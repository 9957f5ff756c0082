"""Discord's side of the wire, on 127.0.0.1, for tests that run the real discord.py client.

- `FakeDiscord`: the REST API (Discord-shaped JSON, bot-token auth, multipart uploads), the CDN
  serving attachments, and a gateway WebSocket (HELLO, IDENTIFY, READY, GUILD_CREATE,
  dispatches, heartbeats, zlib-stream compression, close code 4014 for refused intents). It
  records every call.
  `fail_next` makes the next matching call fail the way Discord fails it (403 Missing
  Permissions, 400 Invalid Form Body...), so error paths run for real.
- Payload builders: users, guilds, messages and interactions as Discord sends them.
- `embed_problems`: Discord's embed limits, as Discord enforces them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import zlib
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

WAIT = 15.0  # seconds: the bound on every wait in these tests
TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
NOW = "2026-11-27T12:00:00.000000+00:00"
GUILD, HELP, GENERAL, APP = 900000000000000001, 900000000000000010, 900000000000000011, 900000000000000100
BOT, ALICE, BOB = 900000000000000200, 900000000000000201, 900000000000000202
DM = 900000000000000020  # alice's direct-message channel with the bot
ADMINS, BOT_ROLE = 900000000000000300, 900000000000000301
MESSAGE_CONTENT = 1 << 15
_ids = itertools.count(910000000000000000)


def snowflake() -> str:
    return str(next(_ids))


@dataclass
class Call:
    method: str
    path: str
    json: dict | list | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    query: dict = field(default_factory=dict)
    response: dict | list | None = None  # what the double answered: the message as Discord stored it
    status: int = 200


# --- payloads, as Discord sends them -----------------------------------------------------------


def user(uid: int, name: str, bot: bool = False) -> dict:
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


def member(uid: int, name: str, roles=(), bot: bool = False, with_user: bool = True) -> dict:
    data = {"roles": [str(r) for r in roles], "joined_at": NOW, "deaf": False, "mute": False, "flags": 0}
    data["permissions"] = "2248473465835073"
    if with_user:
        data["user"] = user(uid, name, bot)
    return data


def role(rid: int, name: str, **extra) -> dict:
    return {
        "id": str(rid),
        "name": name,
        "permissions": "1071698660929",
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
        **extra,
    }


def text_channel(cid: int, name: str) -> dict:
    return {
        "id": str(cid),
        "type": 0,
        "name": name,
        "guild_id": str(GUILD),
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def guild_create() -> dict:
    return {
        "id": str(GUILD),
        "name": "Mail ops",
        "icon": None,
        "owner_id": str(ALICE),
        "unavailable": False,
        "roles": [
            role(GUILD, "@everyone"),
            role(ADMINS, "mail-admins"),
            role(BOT_ROLE, "whyfailed", managed=True, tags={"bot_id": str(BOT)}),
        ],
        "channels": [text_channel(HELP, "help-mail"), text_channel(GENERAL, "general")],
        "members": [member(BOT, "whyfailed", [BOT_ROLE], bot=True)],
        "member_count": 3,
        "large": False,
        "threads": [],
        "voice_states": [],
        "presences": [],
        "emojis": [],
        "stickers": [],
        "features": [],
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "premium_tier": 0,
        "system_channel_flags": 0,
        "preferred_locale": "en-US",
        "nsfw_level": 0,
        "joined_at": NOW,
        "afk_timeout": 300,
        "stage_instances": [],
        "guild_scheduled_events": [],
    }


def attachment(base: str, name: str, data: bytes, content_type: str | None = "text/plain; charset=utf-8") -> dict:
    aid = snowflake()
    url = f"{base}/attachments/{GENERAL}/{aid}/{name}"
    found = {"id": aid, "filename": name, "size": len(data), "url": url, "proxy_url": url}
    if content_type:
        found["content_type"] = content_type
    return found


def thread_channel(tid: int, parent: int, name: str = "my mail bounces", owner: int = ALICE, archive=1440) -> dict:
    meta = {"archived": False, "auto_archive_duration": archive, "archive_timestamp": NOW, "locked": False}
    return {
        "id": str(tid),
        "guild_id": str(GUILD),
        "parent_id": str(parent),
        "owner_id": str(owner),
        "name": name,
        "type": 11,
        "thread_metadata": meta,
        "message_count": 0,
        "member_count": 1,
        "rate_limit_per_user": 0,
        "flags": 0,
        "last_message_id": None,
    }


def direct_message(content: str, author: tuple = (ALICE, "alice"), **extra) -> dict:
    """A DM, as the gateway sends it: no guild_id, no member."""
    sent = message(content, DM, author, **extra)
    del sent["guild_id"], sent["member"]
    return sent


def message(content: str, channel: int = HELP, author: tuple = (ALICE, "alice"), roles=(), **extra) -> dict:
    mentions = extra.pop("mentions", [])
    return {
        "id": snowflake(),
        "channel_id": str(channel),
        "guild_id": str(GUILD),
        "type": 0,
        "flags": 0,
        "author": user(*author),
        "member": member(author[0], author[1], roles, with_user=False),
        "content": content,
        "timestamp": NOW,
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": "@everyone" in content,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "components": [],
        **extra,
    }


def _interaction(
    kind: int, data: dict, who: tuple, roles=(), channel: int = HELP, channel_data: dict | None = None, **extra
) -> dict:
    return {
        "id": snowflake(),
        "application_id": str(APP),
        "type": kind,
        "data": data,
        "token": f"tok-{snowflake()}",
        "version": 1,
        "guild_id": str(GUILD),
        "channel_id": str(channel),
        "channel": channel_data or text_channel(channel, "help-mail" if channel == HELP else "general"),
        "member": member(who[0], who[1], roles),
        "app_permissions": "2248473465835073",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(GUILD)},
        "context": 0,
        "attachment_size_limit": 10485760,
        **extra,
    }


def slash(sub: str, options: dict, who=(BOB, "bob"), roles=(), channel: int = GENERAL, channel_data=None) -> dict:
    kinds = {str: 3, bool: 5}
    inner = [{"name": k, "type": kinds[type(v)], "value": v} for k, v in options.items()]
    data = {"id": snowflake(), "name": "whyfailed", "type": 1, "options": [{"name": sub, "type": 1, "options": inner}]}
    return _interaction(2, data, who, roles, channel, channel_data)


def context_menu(target: dict, who=(BOB, "bob")) -> dict:
    data = {
        "id": snowflake(),
        "name": "Diagnose delivery problem",
        "type": 3,
        "target_id": target["id"],
        "resolved": {"messages": {target["id"]: target}},
    }
    return _interaction(2, data, who, channel=int(target["channel_id"]))


def button_click(sent: dict, custom_id: str, who=(ALICE, "alice")) -> dict:
    return _interaction(
        3, {"custom_id": custom_id, "component_type": 2}, who, channel=int(sent["channel_id"]), message=sent
    )


# --- limits ------------------------------------------------------------------------------------


def embed_problems(embeds: list[dict]) -> list[str]:
    """What Discord would refuse (https://discord.com/developers/docs/resources/message#embed-object-embed-limits)."""
    found, total = [], 0
    if len(embeds) > 10:
        found.append(f"{len(embeds)} embeds")
    for e in embeds:
        sizes = {
            "title": len(e.get("title") or ""),
            "description": len(e.get("description") or ""),
            "footer": len((e.get("footer") or {}).get("text") or ""),
        }
        for name, limit in (("title", 256), ("description", 4096), ("footer", 2048)):
            if sizes[name] > limit:
                found.append(f"{name} {sizes[name]} > {limit}")
        fields = e.get("fields") or []
        if len(fields) > 25:
            found.append(f"{len(fields)} fields")
        for f in fields:
            if len(f["name"]) > 256 or len(f["value"]) > 1024 or not f["value"].strip():
                found.append(f"field {f['name'][:30]!r}: {len(f['name'])}/{len(f['value'])}")
        total += sum(sizes.values()) + sum(len(f["name"]) + len(f["value"]) for f in fields)
    if total > 6000:
        found.append(f"{total} characters across embeds")
    return found


def _json(data, status: int = 200) -> web.Response:
    # exactly "application/json", as Discord sends it: discord.py decodes JSON only for that type
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


# --- the server --------------------------------------------------------------------------------


class FakeDiscord:
    def __init__(self):
        self.calls: list[Call] = []
        self.attachments: dict[str, bytes] = {}
        self.endless: set[str] = set()  # attachment ids whose data the CDN repeats until the client leaves
        self.served: dict[str, int] = {}  # bytes the CDN wrote per attachment id
        self.failures: list[tuple[str, int, dict]] = []
        self.refuse_intents = False
        self.identified: list[dict] = []
        self.dispatch_after_ready: list[tuple[str, dict]] = []
        app = web.Application(client_max_size=50_000_000)
        app.router.add_get("/gateway", self.gateway)
        app.router.add_get("/attachments/{path:.*}", self.cdn)
        app.router.add_route("*", "/api/v10/{path:.*}", self.rest)
        self.runner = web.AppRunner(app, access_log=None)

    async def start(self) -> FakeDiscord:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.base}/api/v10"

    def fail_next(self, fragment: str, status: int = 500, code: int = 0, message: str | None = None) -> None:
        """The next REST call whose path holds FRAGMENT gets Discord's error answer instead.
        (discord.py retries 500, 502 and 504 after a sleep: a 4xx is what fails at once.)"""
        reasons = {400: "Invalid Form Body", 403: "Missing Permissions", 404: "Unknown Message"}
        text = message or reasons.get(status, "500: Internal Server Error")
        self.failures.append((fragment, status, {"message": text, "code": code}))

    def posted(self, fragment: str) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and fragment in c.path]

    async def wait_for(self, predicate, timeout: float = WAIT):
        deadline = asyncio.get_running_loop().time() + timeout
        while not (found := predicate()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; calls were: {[(c.method, c.path) for c in self.calls]}")
            await asyncio.sleep(0.02)
        return found

    # --- REST --------------------------------------------------------------------------------

    async def rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        call = Call(request.method, path, query=dict(request.query))
        if request.content_type == "multipart/form-data":
            async for part in await request.multipart():
                if part.name == "payload_json":
                    call.json = json.loads(await part.text())
                else:
                    call.files[part.filename] = bytes(await part.read())
        elif request.can_read_body:
            call.json = await request.json()
        self.calls.append(call)
        if request.headers.get("Authorization", "Bot " + TOKEN) != "Bot " + TOKEN:
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        failure = next((f for f in self.failures if f[0] in path), None)
        if failure is not None:
            self.failures.remove(failure)
            answer = _json(failure[2], status=failure[1])
        else:
            answer = self._answer(call)
        call.status = answer.status
        call.response = json.loads(answer.body) if answer.body else None
        return answer

    def _answer(self, call: Call) -> web.Response:
        parts = call.path.strip("/").split("/")
        body = call.json if isinstance(call.json, dict) else {}
        if call.path == "/users/@me":
            return _json(user(BOT, "whyfailed", bot=True))
        if call.path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": str(APP),
                    "name": "whyfailed",
                    "icon": None,
                    "description": "",
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "verify_key": "0" * 64,
                    "owner": user(ALICE, "alice"),
                    "flags": 1 << 19,
                    "rpc_origins": [],
                }
            )
        if call.path == "/gateway/bot":
            limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
            return _json({"url": f"ws://127.0.0.1:{self.port}/gateway", "shards": 1, "session_start_limit": limit})
        if call.method == "PUT" and parts[-1] == "commands":
            # Discord fills what was left out: an empty description for a context menu, say
            return _json(
                [
                    {
                        "description": "",
                        "options": [],
                        "nsfw": False,
                        **c,
                        "id": snowflake(),
                        "application_id": str(APP),
                        "version": "1",
                        "default_member_permissions": None,
                    }
                    for c in call.json
                ]
            )
        if call.method == "POST" and parts[0] == "channels" and parts[-1] == "threads":
            return _json(self._thread(parts[1], body))
        if call.method == "POST" and parts[0] == "channels" and parts[-1] == "messages":
            return _json(self._message(parts[1], body, call.files))
        if call.method == "POST" and parts[0] == "interactions":
            kind = body.get("type")
            loading = kind == 5
            flags = (body.get("data") or {}).get("flags", 0)
            return _json(
                {
                    "interaction": {
                        "id": parts[1],
                        "type": 2,
                        "response_message_loading": loading,
                        "response_message_ephemeral": bool(flags & 64),
                    }
                }
            )
        if call.method == "POST" and parts[0] == "webhooks":
            return _json(self._message(body.get("channel_id", str(GENERAL)), body, call.files, webhook=parts[1]))
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _message(self, channel: str, body: dict, files: dict, webhook: str | None = None) -> dict:
        sent = message(body.get("content") or "", int(channel), (BOT, "whyfailed"))
        sent.update(
            author=user(BOT, "whyfailed", bot=True),
            embeds=body.get("embeds") or [],
            components=body.get("components") or [],
            flags=body.get("flags", 0),
        )
        sent["attachments"] = [attachment(self.base, n, d) for n, d in files.items()]
        if webhook:
            sent["webhook_id"] = webhook
        return sent

    def _thread(self, parent: str, body: dict) -> dict:
        archive = body.get("auto_archive_duration", 1440)
        return thread_channel(int(snowflake()), int(parent), body.get("name", ""), BOT, archive)

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(Call("GET", request.path))
        aid = request.match_info["path"].split("/")[-2]  # {channel}/{id}/{name}
        data = self.attachments.get(aid)
        if data is None:
            return web.Response(status=404)
        if aid not in self.endless:
            self.served[aid] = len(data)
            return web.Response(body=data, content_type="text/plain")
        # a body that never ends: only a client that stops reading gets past it
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        self.served[aid] = 0
        try:
            while True:
                await response.write(data)
                self.served[aid] += len(data)
        except (ConnectionError, RuntimeError):  # the client hung up
            return response

    # --- gateway -----------------------------------------------------------------------------

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        packer = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None
        sequence = itertools.count(1)

        async def send(op: int, data, event: str | None = None) -> None:
            frame = json.dumps({"op": op, "d": data, "s": next(sequence) if event else None, "t": event})
            if packer is None:
                await ws.send_str(frame)
            else:
                await ws.send_bytes(packer.compress(frame.encode()) + packer.flush(zlib.Z_SYNC_FLUSH))

        await send(10, {"heartbeat_interval": 45000})
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                break
            payload = json.loads(frame.data)
            if payload["op"] == 1:
                await send(11, None)
            elif payload["op"] == 2:
                self.identified.append(payload["d"])
                if self.refuse_intents and payload["d"]["intents"] & MESSAGE_CONTENT:
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                ready = {
                    "v": 10,
                    "user": user(BOT, "whyfailed", bot=True),
                    "guilds": [{"id": str(GUILD), "unavailable": True}],
                    "session_id": "s1",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                    "application": {"id": str(APP), "flags": 1 << 19},
                    "shard": [0, 1],
                }
                await send(0, ready, "READY")
                await send(0, guild_create(), "GUILD_CREATE")
                for event, data in self.dispatch_after_ready:
                    await send(0, data, event)
        return ws
