"""The Discord bot, driven through the real discord.py 2.x objects.

Gateway payloads (MESSAGE_CREATE, INTERACTION_CREATE) go through discord.py's own
ConnectionState parsers, which build the Message and Interaction objects and dispatch them to
our handlers; everything the bot sends goes through discord.py's HTTP layer to a Discord
double on 127.0.0.1 (tests/discord_wire.py), which records it. Nothing of ours is patched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from contextlib import asynccontextmanager

import discord
import pytest
from discord.gateway import DiscordWebSocket

from bot.adapters.discord import CONTEXT_MENU, DiscordBot, message_text, point_at
from bot.adapters.discord_settings import DiscordSettings
from bot.ingest import ingest_paths
from bot.settings import Settings
from bot.store import Store

from .conftest import FIXTURES, REPO
from .discord_wire import (
    ADMINS,
    ALICE,
    BOT,
    GENERAL,
    HELP,
    TOKEN,
    WAIT,
    FakeDiscord,
    attachment,
    button_click,
    context_menu,
    embed_problems,
    guild_create,
    message,
    slash,
    user,
)

LOG = FIXTURES / "postfix" / "deferred-then-bounced.log"
EPHEMERAL = 64


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario, WAIT * 3))


class _Errors(logging.Handler):
    """Errors discord.py or the adapter logged: handlers' exceptions end there, not in the task."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@asynccontextmanager
async def discord_bot(tmp_path, expect_errors: bool = False, **settings):
    """A logged-in bot whose HTTP goes to a FakeDiscord, in a guild with #help-mail and #general."""
    fake = await FakeDiscord().start()
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    db = tmp_path / "whyfailed.db"
    ingest_paths(Store(db), [str(LOG)])
    options = DiscordSettings.load(token=TOKEN, channels=["help-mail"], api_url=fake.api)
    point_at(options)  # Route.BASE: configuration, the way a proxy would be set
    bot = DiscordBot(Settings(db=str(db), allowed_users=[str(ADMINS)], **settings), options)
    try:
        async with bot:
            await bot.login(TOKEN)
            bot._connection.parse_guild_create(guild_create())
            yield bot, fake
    finally:
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
        logging.getLogger().removeHandler(errors)
        await fake.stop()
    if not expect_errors:
        assert not errors.records, [r.getMessage() for r in errors.records]


async def deliver(bot: DiscordBot, event: str, payload: dict) -> None:
    """Hand a gateway dispatch to discord.py's parser, then wait (bounded) for the handlers it started."""
    before = asyncio.all_tasks()
    getattr(bot._connection, f"parse_{event.lower()}")(payload)
    for _ in range(5):  # a handler may start another (a view dispatch starts the button's callback)
        started = [t for t in asyncio.all_tasks() - before if t.get_name().startswith(("discord", "CommandTree"))]
        if not started:
            return
        done, still = await asyncio.wait(started, timeout=WAIT)
        assert not still, f"handlers still running after {WAIT}s: {still}"
        before |= done


def sent_messages(fake: FakeDiscord):
    return [c for c in fake.posted("/messages") if not c.path.endswith("/threads")]


def assert_safe(call) -> None:
    """No pings, and nothing Discord would refuse."""
    mentions = call.json["allowed_mentions"]
    assert mentions["parse"] == [] and not mentions.get("users") and not mentions.get("roles"), mentions
    assert mentions.get("replied_user", False) is False
    assert not embed_problems(call.json.get("embeds") or [])
    assert len(call.json.get("content") or "") <= 2000


# --- pasted logs -------------------------------------------------------------------------------


def test_a_pasted_postfix_log_in_a_help_channel_gets_embeds_per_recipient(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", message(f"Why?\n```log\n{LOG.read_text()}```"))
            [reply] = sent_messages(fake)
            assert reply.path == f"/channels/{HELP}/messages"
            assert_safe(reply)
            assert str(reply.json["message_reference"]["channel_id"]) == str(HELP)
            titles = [e["title"] for e in reply.json["embeds"]]
            assert titles == [
                "✗ ops@slow.example.net: bounced (permanent failure)",
                "✓ carl@partner.example: delivered",
            ]
            first = {f["name"]: f["value"] for f in reply.json["embeds"][0]["fields"]}
            assert first["Failing step"] == "RCPT TO"
            assert "552 5.2.2" in first["Reply"] and "confidence high" in first["Diagnosis"]
            assert "mailbox-full" in first["Article"] and first["Next steps"].startswith("•")
            buttons = reply.json["components"][0]["components"]
            assert [b["label"] for b in buttons] == ["Helpful", "Not helpful"]
            assert buttons[0]["custom_id"] == "whyfailed:fb:1:mailbox-full"

    run(scenario())


def test_chatter_gets_no_reply_and_other_channels_need_a_mention(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", message("hi all, is the printer fixed?"))
            await deliver(bot, "MESSAGE_CREATE", message(LOG.read_text(), channel=GENERAL))  # not addressed to us
            assert sent_messages(fake) == []
            mention = message(f"<@{BOT}> {LOG.read_text()}", channel=GENERAL, mentions=[user(BOT, "whyfailed", True)])
            await deliver(bot, "MESSAGE_CREATE", mention)
            [reply] = sent_messages(fake)
            assert reply.path == f"/channels/{GENERAL}/messages", reply.json
            assert len(reply.json["embeds"]) == 2

    run(scenario())


def test_a_thread_in_a_help_channel_is_a_help_channel_too(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            threads = []
            for parent in (HELP, GENERAL):
                thread = {**fake._thread(str(parent), {"name": "help-mail"}), "newly_created": True}
                threads.append(thread["id"])
                await deliver(bot, "THREAD_CREATE", thread)
                await deliver(bot, "MESSAGE_CREATE", message(LOG.read_text(), channel=int(thread["id"])))
            [reply] = sent_messages(fake)  # the thread in #general is not one, whatever its name
            assert reply.path == f"/channels/{threads[0]}/messages"
            assert len(reply.json["embeds"]) == 2

    run(scenario())


def test_a_log_attachment_is_read_from_discords_cdn(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            data = (FIXTURES / "postfix" / "mx-not-found.log").read_bytes()
            file = attachment(fake.base, "mail.log", data)
            photo = attachment(fake.base, "screen.png", b"\x89PNG\r\n", "image/png")
            fake.attachments[file["id"]] = data
            await deliver(bot, "MESSAGE_CREATE", message("see attached", attachments=[file, photo]))
            downloads = [c.path for c in fake.calls if c.path.startswith("/attachments/")]
            assert downloads == [f"/attachments/{GENERAL}/{file['id']}/mail.log"]  # the picture is left alone
            [reply] = sent_messages(fake)
            assert_safe(reply)
            assert "bounced" in reply.json["embeds"][0]["title"]
            bot.options.max_attachment_bytes = 100  # configuration: files larger than this are not fetched
            big = attachment(fake.base, "maillog.txt", data, content_type=None)
            await deliver(bot, "MESSAGE_CREATE", message("", attachments=[big]))
            notice = sent_messages(fake)[-1]
            assert f"maillog.txt is {len(data):,} bytes; I read files up to 100 bytes" in notice.json["content"]
            assert not [c for c in fake.calls if big["id"] in c.path]

    run(scenario())


def test_a_huge_paste_goes_to_a_thread_within_discords_limits_with_the_full_report(tmp_path):
    lines = []
    for n in range(60):  # 60 recipients with long replies: far more than one message can hold
        lines.append(
            f"Nov 27 08:00:{n % 60:02d} mx1 postfix/smtp[{2000 + n}]: {0x7A1B2C0000 + n:010X}: "
            f"to=<user{n}@example{n}.net>, "
            f"relay=mx.example{n}.net[192.0.2.{n}]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced "
            f"(host mx.example{n}.net[192.0.2.{n}] said: 550 5.1.1 <user{n}@example{n}.net>: Recipient address "
            f"rejected: {'User unknown in virtual mailbox table ' * 20}(in reply to RCPT TO command))"
        )

    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", message("\n".join(lines)))
            [thread] = fake.posted("/threads")
            assert thread.json["name"].startswith("whyfailed: 60 recipients") and len(thread.json["name"]) <= 100
            sent = sent_messages(fake)
            assert 1 < len(sent) <= 5 and all(c.path != f"/channels/{HELP}/messages" for c in sent)
            for call in sent:
                assert_safe(call)
            assert "more recipients are in the attached report" in sent[-1].json["embeds"][-1]["description"]
            report = sent[-1].files["whyfailed-report.md"].decode()
            assert report.count("## ✗ user") == 60
            assert sent[-1].json["components"] and not sent[0].json.get("components")

    run(scenario())


def test_everyone_and_user_mentions_in_a_log_ping_nobody(tmp_path):
    text = LOG.read_text().replace("Mailbox full, quota exceeded", "@everyone <@900000000000000201> @here quota")

    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", message(text))
            [reply] = sent_messages(fake)
            assert_safe(reply)
            shown = json.dumps(reply.json["embeds"], ensure_ascii=False)
            assert "@\u200beveryone" in shown and "<@\u200b900000000000000201>" in shown and "@\u200bhere" in shown
            assert "@everyone" not in shown and "<@9" not in shown

    run(scenario())


def test_fences_and_our_own_mention_are_taken_off_the_paste():
    assert message_text(f"<@{BOT}> look:\n```postfix\nline 1\nline 2```", BOT) == "look:\n\nline 1\nline 2"
    assert message_text("```Nov 27 08:00:01 mx1 postfix/smtp[1]: x```") == "Nov 27 08:00:01 mx1 postfix/smtp[1]: x"


# --- /whyfailed --------------------------------------------------------------------------------


def test_commands_are_registered_with_the_context_menu(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (_, fake):
            [put] = [c for c in fake.calls if c.method == "PUT"]
            assert put.path == "/applications/900000000000000100/commands"
            by_name = {c["name"]: c for c in put.json}
            assert by_name[CONTEXT_MENU]["type"] == 3
            assert {o["name"] for o in by_name["whyfailed"]["options"]} == {"address", "kb", "help"}

    run(scenario())


def test_whyfailed_address_refuses_the_unauthorised_and_audits_both(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "INTERACTION_CREATE", slash("address", {"address": "ops@slow.example.net"}))
            await deliver(
                bot,
                "INTERACTION_CREATE",
                slash("address", {"address": "OPS@slow.example.net", "since": "3650d"}, roles=[ADMINS]),
            )
            defers = fake.posted("/callback")
            assert [(c.json["type"], c.json["data"]["flags"]) for c in defers] == [(5, EPHEMERAL), (5, EPHEMERAL)]
            refusal, answer = fake.posted("/webhooks/")
            assert refusal.json["flags"] == EPHEMERAL and "not enabled for you here" in refusal.json["content"]
            assert answer.json["flags"] == EPHEMERAL and answer.query.get("wait") in ("true", "1", "True")
            assert_safe(answer)
            assert answer.json["embeds"][0]["title"].startswith("✗ ops@slow.example.net: bounced")
        rows = Store(tmp_path / "whyfailed.db").audit_rows()
        assert [(r["surface"], r["user"], r["outcome"].split(":")[0]) for r in rows] == [
            ("discord", "900000000000000202", "refused"),
            ("discord", "900000000000000202", "answered"),
        ]
        assert rows[0]["channel"] == str(GENERAL)

    run(scenario())


def test_public_answers_only_for_those_allowed_and_help_is_always_private(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(
                bot,
                "INTERACTION_CREATE",
                slash("address", {"address": "ops@slow.example.net", "public": True}, roles=[ADMINS]),
            )
            await deliver(bot, "INTERACTION_CREATE", slash("help", {}))
            await deliver(bot, "INTERACTION_CREATE", slash("kb", {"query": "5.2.2 mailbox full"}))
            await deliver(bot, "INTERACTION_CREATE", slash("kb", {"query": "greylisting"}))  # a second search
            flags = [c.json.get("data", {}).get("flags", 0) for c in fake.posted("/callback")]
            assert flags == [0, EPHEMERAL, EPHEMERAL, EPHEMERAL]
            public, help_, kb, again = fake.posted("/webhooks/")
            assert again.json["embeds"][0]["title"] and "Sorry" not in (again.json.get("content") or "")
            assert public.json.get("flags", 0) == 0 and public.json["embeds"]
            assert "/whyfailed address" in help_.json["embeds"][0]["description"]
            assert kb.json["embeds"][0]["title"] and kb.json["flags"] == EPHEMERAL
            for call in (public, help_, kb):
                assert_safe(call)

    run(scenario())


# --- context menu and feedback -----------------------------------------------------------------


def test_the_context_menu_diagnoses_any_message_for_the_asker_alone(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            target = message(LOG.read_text(), channel=GENERAL)
            await deliver(bot, "INTERACTION_CREATE", context_menu(target))
            chatter = message("lunch?", channel=GENERAL)
            await deliver(bot, "INTERACTION_CREATE", context_menu(chatter))
            assert [c.json["data"]["flags"] for c in fake.posted("/callback")] == [EPHEMERAL, EPHEMERAL]
            report, notice = fake.posted("/webhooks/")
            assert report.json["flags"] == EPHEMERAL and len(report.json["embeds"]) == 2
            assert_safe(report)
            assert "does not look like a mail log" in notice.json["content"]
            assert sent_messages(fake) == []  # nothing in the channel itself

    run(scenario())


def test_the_feedback_button_stores_a_row_with_the_diagnosis_id(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", message(LOG.read_text()))
            [reply] = sent_messages(fake)
            sent = reply.response  # the message as Discord stored it, buttons and all
            not_helpful = reply.json["components"][0]["components"][1]["custom_id"]
            await deliver(bot, "INTERACTION_CREATE", button_click(sent, not_helpful))
            [thanks] = fake.posted("/callback")
            assert thanks.json["type"] == 4 and thanks.json["data"]["flags"] == EPHEMERAL
            assert thanks.json["data"]["content"].startswith("Thanks")
        [row] = Store(tmp_path / "whyfailed.db").feedback_rows()
        assert (row["surface"], row["diagnosis"], row["helpful"], row["user"]) == (
            "discord",
            "mailbox-full",
            0,
            str(ALICE),
        )
        assert row["message_id"] == sent["id"]

    run(scenario())


def test_an_error_reaches_the_channel_as_an_apology_not_a_traceback(tmp_path):
    def broken(*_args, **_kwargs):
        raise RuntimeError("database is on fire")

    async def scenario():
        async with discord_bot(tmp_path, expect_errors=True) as (bot, fake):
            bot.conversation.on_message = broken  # a failure inside the core, whatever it is
            bot.conversation.on_command = broken
            await deliver(bot, "MESSAGE_CREATE", message(LOG.read_text()))
            [reply] = sent_messages(fake)
            assert reply.json["content"].startswith("Sorry") and "fire" not in reply.json["content"]
            await deliver(bot, "INTERACTION_CREATE", slash("address", {"address": "a@b.example"}, roles=[ADMINS]))
            [apology] = fake.posted("/webhooks/")
            assert apology.json["flags"] == EPHEMERAL and apology.json["content"].startswith("Sorry")
            assert "Traceback" not in apology.json["content"] and "fire" not in apology.json["content"]

    run(scenario())


# --- the gateway, end to end -------------------------------------------------------------------


@pytest.mark.slow
def test_over_the_gateway_a_paste_is_answered_and_the_message_content_intent_is_asked_for(tmp_path):
    async def scenario():
        fake = await FakeDiscord().start()
        fake.dispatch_after_ready.append(("MESSAGE_CREATE", message(LOG.read_text())))
        saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        options = DiscordSettings.load(
            token=TOKEN, channels=[str(HELP)], api_url=fake.api, gateway_url=f"ws://127.0.0.1:{fake.port}/gateway"
        )
        point_at(options)
        bot = DiscordBot(Settings(db=str(tmp_path / "w.db")), options)
        try:
            running = asyncio.create_task(bot.start(TOKEN))
            [reply] = await fake.wait_for(lambda: sent_messages(fake))
            assert_safe(reply)
            assert fake.identified[0]["intents"] & (1 << 15)
            await bot.close()
            await asyncio.wait_for(running, WAIT)
        finally:
            discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
            await fake.stop()

    run(scenario())


async def _serve(env: dict) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        "discord",
        cwd=REPO,
        env={**os.environ, "PYTHONUTF8": "1", **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), WAIT * 2)
    except TimeoutError:
        process.kill()
        raise
    return process.returncode, err.decode()


@pytest.mark.slow
def test_serve_discord_says_what_to_fix_for_a_missing_or_refused_token_or_a_refused_intent(tmp_path):
    async def scenario():
        code, err = await _serve({"DISCORD_TOKEN": "", "WHYFAILED_DB": str(tmp_path / "w.db")})
        assert code == 2 and "DISCORD_TOKEN is not set" in err and "Traceback" not in err
        fake = await FakeDiscord().start()
        fake.refuse_intents = True
        env = {
            "WHYFAILED_DB": str(tmp_path / "w.db"),
            "WHYFAILED_DISCORD_API_URL": fake.api,
            "WHYFAILED_DISCORD_GATEWAY_URL": f"{fake.base.replace('http', 'ws')}/gateway",
        }
        try:
            code, err = await _serve({**env, "DISCORD_TOKEN": TOKEN})
            refused_code, refused = await _serve({**env, "DISCORD_TOKEN": TOKEN[:-4] + "XXXX"})
        finally:
            await fake.stop()
        assert code == 2, err
        assert "MESSAGE CONTENT INTENT" in err and "Traceback" not in err
        assert len(fake.identified) == 1 and fake.identified[0]["token"] == TOKEN
        assert refused_code == 2 and "Discord refused DISCORD_TOKEN" in refused and "Traceback" not in refused

    run(scenario())


def test_a_hostile_delivery_still_fits_in_one_embed_and_one_message():
    from datetime import datetime

    from bot.model import Attempt, Delivery, Diagnosis, Related, Report
    from bot.render.discord import render_report

    long = "x" * 5000
    related = tuple(Related("greylisted", "Greylisted " * 30, long) for _ in range(20))
    diagnosis = Diagnosis(
        "unknown", "t" * 400, "permanent", "sender", 0.3, long, tuple([long] * 30), long, long, related
    )
    attempts = [Attempt("deferred", datetime(2026, 1, 1), "rcpt", 450, "4.2.0", long, long, long) for _ in range(50)]
    delivery = Delivery(f"{'a' * 64}@{'b' * 250}", "@everyone" * 100, long, attempts=attempts, diagnosis=diagnosis)
    report = Report("paste", ["postfix"], 1, 1, [delivery] * 3, [], notes=[long])
    rendered = render_report(report)
    assert rendered.truncated and rendered.full_report
    for page in rendered.messages:
        assert not embed_problems([e.to_dict() for e in page.embeds]), [len(e) for e in page.embeds]
        assert "@everyone" not in json.dumps([e.to_dict() for e in page.embeds], ensure_ascii=False)
