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

from bot.adapters.discord import APOLOGY, CONTEXT_MENU, DiscordBot, message_text, point_at
from bot.adapters.discord_settings import DiscordSettings
from bot.ingest import ingest_paths
from bot.settings import Settings
from bot.store import Store

from .conftest import FIXTURES, REPO
from .discord_wire import (
    ADMINS,
    ALICE,
    BOT,
    DM,
    GENERAL,
    HELP,
    TOKEN,
    WAIT,
    FakeDiscord,
    attachment,
    button_click,
    context_menu,
    direct_message,
    embed_problems,
    guild_create,
    message,
    slash,
    snowflake,
    thread_channel,
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
async def discord_bot(tmp_path, expect_errors: bool = False, options: dict | None = None, **settings):
    """A logged-in bot whose HTTP goes to a FakeDiscord, in a guild with #help-mail and #general.
    `options` are DiscordSettings fields, `settings` Settings fields, both loaded as configured."""
    fake = await FakeDiscord().start()
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    db = tmp_path / "whyfailed.db"
    ingest_paths(Store(db), [str(LOG)])
    options = DiscordSettings.load(
        **{"token": TOKEN, "channels": ["help-mail"], "api_url": fake.api, **(options or {})}
    )
    point_at(options)  # Route.BASE: configuration, the way a proxy would be set
    bot = DiscordBot(Settings(**{"db": str(db), "allowed_users": [str(ADMINS)], **settings}), options)
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

    run(scenario())


def test_an_attachment_over_max_attachment_bytes_is_not_downloaded(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path, options={"max_attachment_bytes": 100}) as (bot, fake):
            data = (FIXTURES / "postfix" / "mx-not-found.log").read_bytes()
            big = attachment(fake.base, "maillog.txt", data, content_type=None)
            fake.attachments[big["id"]] = data
            await deliver(bot, "MESSAGE_CREATE", message("", attachments=[big]))
            [notice] = sent_messages(fake)
            assert f"maillog.txt is {len(data):,} bytes; I read files up to 100 bytes" in notice.json["content"]
            assert not [c for c in fake.calls if big["id"] in c.path]

    run(scenario())


def test_an_eml_bounce_and_a_txt_without_content_type_are_read(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            files = [
                ("bounce.eml", FIXTURES / "bounce" / "postfix-dsn-unknown-user.eml", "message/rfc822"),
                ("gmail.txt", FIXTURES / "bounce" / "gmail-address-not-found.txt", None),  # no content_type
            ]
            for name, path, content_type in files:
                file = attachment(fake.base, name, path.read_bytes(), content_type)
                fake.attachments[file["id"]] = path.read_bytes()
                await deliver(bot, "MESSAGE_CREATE", message("", attachments=[file]))
            eml, txt = sent_messages(fake)
            for reply in (eml, txt):
                assert_safe(reply)
                fields = {f["name"]: f["value"] for f in reply.json["embeds"][0]["fields"]}
                assert "unknown-user" in fields["Diagnosis"]
            assert eml.json["embeds"][0]["title"].startswith("✗ bob@example.org")
            assert txt.json["embeds"][0]["title"].startswith("✗ bob.typo@example.org")

    run(scenario())


def test_an_attachment_with_nul_bytes_is_not_text(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            data = b"Nov 27 08:00:01 mx1 postfix\x00\x01\x02 binary"
            file = attachment(fake.base, "mail.log", data)
            fake.attachments[file["id"]] = data
            await deliver(bot, "MESSAGE_CREATE", message("", attachments=[file]))
            [notice] = sent_messages(fake)
            assert_safe(notice)
            assert "mail.log is not text" in notice.json["content"] and not notice.json.get("embeds")

    run(scenario())


def test_attachments_are_read_no_further_than_max_paste_bytes(tmp_path):
    async def scenario():
        # the CDN keeps sending the first file for as long as anyone reads: only a bounded read ends
        async with discord_bot(tmp_path, max_paste_bytes=20_000) as (bot, fake):
            data = LOG.read_bytes()
            endless = attachment(fake.base, "mail.log", data)
            second = attachment(fake.base, "mail.log.1", data)
            fake.attachments |= {endless["id"]: data, second["id"]: data}
            fake.endless.add(endless["id"])
            await deliver(bot, "MESSAGE_CREATE", message("", attachments=[endless, second]))
            [reply] = sent_messages(fake)
            assert_safe(reply)
            assert "mail.log.1 was not read: I read at most 20,000 bytes of one message" in reply.json["content"]
            assert "mailbox-full" in json.dumps(reply.json["embeds"])
            assert "Only the first 20 kB were read" in reply.json["embeds"][-1]["footer"]["text"]
            assert not [c for c in fake.calls if second["id"] in c.path]  # nothing left for it to add

    run(scenario())


def test_a_direct_message_gets_a_reply(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", direct_message(LOG.read_text()))
            await deliver(bot, "MESSAGE_CREATE", direct_message("hello?"))
            report, hint = sent_messages(fake)
            assert report.path == hint.path == f"/channels/{DM}/messages"
            assert_safe(report)
            assert len(report.json["embeds"]) == 2
            assert "does not look like a mail log" in hint.json["content"]

    run(scenario())


def _huge_paste() -> str:
    lines = []
    for n in range(60):  # 60 recipients with long replies: far more than one message can hold
        lines.append(
            f"Nov 27 08:00:{n % 60:02d} mx1 postfix/smtp[{2000 + n}]: {0x7A1B2C0000 + n:010X}: "
            f"to=<user{n}@example{n}.net>, "
            f"relay=mx.example{n}.net[192.0.2.{n}]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced "
            f"(host mx.example{n}.net[192.0.2.{n}] said: 550 5.1.1 <user{n}@example{n}.net>: Recipient address "
            f"rejected: {'User unknown in virtual mailbox table ' * 20}(in reply to RCPT TO command))"
        )
    return "\n".join(lines)


def test_a_huge_paste_goes_to_a_thread_within_discords_limits_with_the_full_report(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", message(_huge_paste()))
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


def test_without_permission_to_open_a_thread_one_reply_carries_the_file(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            fake.fail_next("/threads", 403, 50013)  # Missing Permissions: Create Public Threads not granted
            await deliver(bot, "MESSAGE_CREATE", message(_huge_paste()))
            [refused] = fake.posted("/threads")
            assert refused.status == 403
            [reply] = sent_messages(fake)
            assert reply.path == f"/channels/{HELP}/messages" and reply.json["message_reference"]
            assert_safe(reply)
            assert reply.json["embeds"] and reply.json["components"]
            assert reply.files["whyfailed-report.md"].decode().count("## ✗ user") == 60

    run(scenario())


def test_the_embed_links_the_article_where_the_knowledge_base_is_published(tmp_path, monkeypatch):
    monkeypatch.setenv("WHYFAILED_DISCORD_ARTICLE_URL", "https://wiki.example.org/mail/kb/")

    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", message(LOG.read_text()))
            [reply] = sent_messages(fake)
            fields = {f["name"]: f["value"] for f in reply.json["embeds"][0]["fields"]}
            assert fields["Article"] == (
                "[mailbox-full](https://wiki.example.org/mail/kb/mailbox-full.md) · `/whyfailed kb mailbox-full`"
            )

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


def test_whyfailed_address_from_a_thread_counts_as_its_allowed_channel(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path, allowed_channels=[str(HELP)]) as (bot, fake):
            for parent in (HELP, GENERAL):
                thread = thread_channel(int(snowflake()), parent)
                await deliver(bot, "THREAD_CREATE", {**thread, "newly_created": True})
                asked = slash(
                    "address", {"address": "ops@slow.example.net"}, channel=int(thread["id"]), channel_data=thread
                )
                await deliver(bot, "INTERACTION_CREATE", asked)
            in_help, in_general = fake.posted("/webhooks/")
            assert in_help.json["embeds"][0]["title"].startswith("✗ ops@slow.example.net: bounced")
            assert "not enabled for you here" in in_general.json["content"]
        rows = Store(tmp_path / "whyfailed.db").audit_rows()
        assert [(r["channel"], r["outcome"].split(":")[0]) for r in rows] == [
            (str(HELP), "answered"),
            (str(GENERAL), "refused"),
        ]

    run(scenario())


def test_whyfailed_address_takes_a_domain(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "INTERACTION_CREATE", slash("address", {"address": "@slow.example.net"}, roles=[ADMINS]))
            [answer] = fake.posted("/webhooks/")
            assert_safe(answer)
            titles = [e["title"] for e in answer.json["embeds"]]
            assert titles == ["✗ ops@slow.example.net: bounced (permanent failure)"]  # its failures only

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


def test_the_feedback_button_stores_a_row_per_diagnosis_id_of_the_answer(tmp_path):
    paste = LOG.read_text() + (FIXTURES / "postfix" / "mx-not-found.log").read_text()

    async def scenario():
        async with discord_bot(tmp_path) as (bot, fake):
            await deliver(bot, "MESSAGE_CREATE", message(paste))
            [reply] = sent_messages(fake)
            sent = reply.response  # the message as Discord stored it, buttons and all
            not_helpful = reply.json["components"][0]["components"][1]["custom_id"]
            assert not_helpful == "whyfailed:fb:0:mailbox-full,dns-mx-failure"  # the failing ones, not "delivered"
            await deliver(bot, "INTERACTION_CREATE", button_click(sent, not_helpful))
            [thanks] = fake.posted("/callback")
            assert thanks.json["type"] == 4 and thanks.json["data"]["flags"] == EPHEMERAL
            assert thanks.json["data"]["content"].startswith("Thanks")
        rows = Store(tmp_path / "whyfailed.db").feedback_rows()
        assert [(r["surface"], r["diagnosis"], r["helpful"], r["user"]) for r in rows] == [
            ("discord", "mailbox-full", 0, str(ALICE)),
            ("discord", "dns-mx-failure", 0, str(ALICE)),
        ]
        assert {r["message_id"] for r in rows} == {sent["id"]}

    run(scenario())


def test_an_error_reaches_the_channel_as_an_apology_not_a_traceback(tmp_path, caplog):
    async def scenario():
        # WHYFAILED_DB is a folder: the index cannot be opened, a real failure inside the core
        async with discord_bot(tmp_path, expect_errors=True, db=str(tmp_path)) as (bot, fake):
            fake.fail_next(f"/channels/{HELP}/messages", 400, 50035)  # and Discord refuses the first answer
            await deliver(bot, "MESSAGE_CREATE", message(LOG.read_text()))
            refused, apology = sent_messages(fake)
            assert refused.status == 400 and refused.json["embeds"]
            assert apology.status == 200 and apology.json["content"] == APOLOGY
            assert_safe(apology)
            await deliver(bot, "INTERACTION_CREATE", slash("address", {"address": "a@b.example"}, roles=[ADMINS]))
            [followup] = fake.posted("/webhooks/")
            assert followup.json["flags"] == EPHEMERAL and followup.json["content"] == APOLOGY
            assert "Traceback" not in followup.json["content"] and str(tmp_path) not in followup.json["content"]

    run(scenario())
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("diagnosing message" in m and "Invalid Form Body" in m for m in logged), logged
    assert any("app command failed" in m and "cannot open the index" in m for m in logged), logged


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


# --- Check now ---------------------------------------------------------------------------------

MX_NOT_FOUND = FIXTURES / "postfix" / "mx-not-found.log"


async def _check_button_of_a_paste(bot, fake) -> tuple[dict, str]:
    await deliver(bot, "MESSAGE_CREATE", message(MX_NOT_FOUND.read_text()))
    [reply] = sent_messages(fake)
    buttons = [c["custom_id"] for row in reply.json["components"] for c in row["components"]]
    assert "Checked now" not in json.dumps(reply.json["embeds"])
    return reply.response, next(b for b in buttons if b.startswith("whyfailed:check:"))


def _checked_field(call) -> str:
    return next(f["value"] for e in call.json["embeds"] for f in e.get("fields", []) if f["name"] == "Checked now")


def test_check_now_on_a_pasted_log_answers_the_clicker_alone_with_what_dns_says_now(tmp_path, resolver):
    async def scenario():
        async with discord_bot(tmp_path, allowed_channels=[str(HELP)], resolver=resolver, check_rate=1) as (bot, fake):
            sent, check = await _check_button_of_a_paste(bot, fake)
            await deliver(bot, "INTERACTION_CREATE", button_click(sent, check))
            await deliver(bot, "INTERACTION_CREATE", button_click(sent, check))  # again, at once: over the limit
            assert [c.json["data"]["flags"] for c in fake.posted("/callback")] == [EPHEMERAL, EPHEMERAL]
            checked, limited = fake.posted("/webhooks/")
            assert checked.json["flags"] == EPHEMERAL
            assert_safe(checked)
            field = _checked_field(checked)
            assert "✗ *DNS* `no-such-domain.example`" in field and "NXDOMAIN" in field
            assert limited.json["flags"] == EPHEMERAL and "try again in" in limited.json["content"]
        rows = Store(tmp_path / "whyfailed.db").audit_rows()
        assert [(r["user"], r["query"], r["outcome"]) for r in rows] == [
            (str(ALICE), "check (a pasted log's answer)", "answered: 1 checks"),
            (str(ALICE), "check (a pasted log's answer)", "rate-limited"),
        ]

    run(scenario())


def test_check_now_is_refused_to_those_who_may_not_query_and_audited(tmp_path):
    async def scenario():
        async with discord_bot(tmp_path, resolver="127.0.0.1:9") as (bot, fake):
            sent, check = await _check_button_of_a_paste(bot, fake)
            await deliver(bot, "INTERACTION_CREATE", button_click(sent, check))
            [refused] = fake.posted("/webhooks/")
            assert refused.json["flags"] == EPHEMERAL and "not enabled for you here" in refused.json["content"]
        rows = Store(tmp_path / "whyfailed.db").audit_rows()
        assert [(r["surface"], r["user"], r["outcome"]) for r in rows] == [("discord", str(ALICE), "refused")]

    run(scenario())


def test_whyfailed_address_with_check_adds_checked_now(tmp_path, resolver):
    async def scenario():
        settings = {"resolver": resolver, "logs": [str(MX_NOT_FOUND)], "db": str(tmp_path / "none.db")}
        async with discord_bot(tmp_path, **settings) as (bot, fake):
            asked = slash("address", {"address": "info@no-such-domain.example", "check": True}, roles=[ADMINS])
            await deliver(bot, "INTERACTION_CREATE", asked)
            [answer] = fake.posted("/webhooks/")
            assert_safe(answer)
            assert "NXDOMAIN" in _checked_field(answer)

    run(scenario())


def test_a_checked_delivery_with_hostile_dns_text_fits_and_pings_nobody():
    from bot.checks import PROBLEM, CheckResult
    from bot.render.discord import render_report
    from bot.report import diagnose_text

    report = diagnose_text(MX_NOT_FOUND.read_text(), "paste")
    txt = "v=spf1 @everyone <@&123> **bold** `tick` " + "x" * 600
    report.deliveries[0].checks = [CheckResult("dns", "no-such-domain.example", PROBLEM, txt, facts=(txt,) * 10)] * 5
    rendered = render_report(report)
    embeds = [e.to_dict() for m in rendered.messages for e in m.embeds]
    assert not embed_problems(embeds)
    field = next(f["value"] for f in embeds[0]["fields"] if f["name"] == "Checked now")
    assert "@\u200beveryone" in field and "@everyone" not in field and "\\*\\*bold" in field
