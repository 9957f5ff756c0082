"""The Discord surface: a discord.py 2.x client over the conversation core.

Each handler turns Discord's objects into the core's call, renders the Reply as embeds
(bot.render.discord) and sends it with `AllowedMentions.none()`. Nothing here parses a log.
What is Discord's alone lives here: help channels and mentions, code fences and attachments,
threads for long answers, the app commands and their 3-second rule, persistent buttons.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re

import discord
from discord import app_commands

from bot.adapters.discord_buttons import (
    APOLOGY,
    NO_PINGS,
    CheckButton,
    FeedbackButton,
    apologise,
    channel_id,
    feedback_view,
)
from bot.adapters.discord_files import AttachmentReader
from bot.adapters.discord_settings import DiscordSettings
from bot.adapters.memory import Memory
from bot.checks import checkable
from bot.conversation import Context, Conversation, Reply, store_audit
from bot.render.discord import REPORT_FILE, DiscordReply, render_notice, render_reply, safe
from bot.settings import Settings

log = logging.getLogger("whyfailed.discord")

CONTEXT_MENU = "Diagnose delivery problem"
NOT_A_LOG = (
    "That does not look like a mail log or a bounce message, so there is nothing to diagnose. "
    "Paste log lines (a code block is fine), attach a .log/.txt/.eml file, or try /whyfailed help."
)
INTENT_HELP = (
    "Discord refused the Message Content intent, which whyfailed needs to read pasted logs. In the "
    "Discord Developer Portal, open your application > Bot > Privileged Gateway Intents, turn on "
    "MESSAGE CONTENT INTENT, save, and start the bot again."
)
HANDLED_TYPES = (discord.MessageType.default, discord.MessageType.reply)
# an opening fence with its language tag (```log), or a bare fence: Discord's, not the log's
_FENCE = re.compile(r"```(?:[A-Za-z0-9_+.-]{1,20}[ \t]*\n)?")


def message_text(content: str, bot_id: int | None = None) -> str:
    """A message as pasted: the mention that addressed us removed, code fences dropped."""
    if bot_id is not None:
        content = re.sub(rf"<@!?{bot_id}>\s*", "", content)
    return _FENCE.sub("\n", content).strip("\n")


class DiscordBot(discord.Client):
    def __init__(self, settings: Settings, options: DiscordSettings, conversation: Conversation | None = None):
        # we never join voice: discord.py's warnings about missing voice libraries are only noise
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: switched on in the Developer Portal (README)
        super().__init__(intents=intents, allowed_mentions=NO_PINGS)
        self.settings, self.options = settings, options
        self.conversation = conversation or Conversation(settings, audit=store_audit(settings.store_target))
        self.files = AttachmentReader(options.max_attachment_bytes, settings.max_paste_bytes)
        self.memory = Memory()  # the answers behind Check now buttons
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self.on_app_command_error)
        register_commands(self)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(FeedbackButton, CheckButton)  # buttons keep working across restarts
        if self.options.sync_commands:
            await self.sync_commands()

    async def close(self) -> None:
        await self.files.close()
        await super().close()

    async def sync_commands(self) -> None:
        """Guild registration shows at once (handy while setting up); global takes effect everywhere."""
        try:
            for guild_id in self.options.guilds:
                guild = discord.Object(id=int(guild_id))
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
            if not self.options.guilds:
                await self.tree.sync()
        except discord.Forbidden as error:  # invited without applications.commands: messages still work
            log.warning("could not register the slash commands (%s): re-invite with applications.commands", error)

    # --- pasted logs -----------------------------------------------------------------------

    def addressed(self, message: discord.Message) -> bool:
        """A person's message in a help channel (or a thread in one), a DM, or one that mentions us."""
        if message.author.bot or message.type not in HANDLED_TYPES or self.user is None:
            return False
        if message.guild is None:
            return True
        channel = message.channel
        if isinstance(channel, discord.Thread):  # a thread, or a forum post: its channel decides
            parent = channel.parent
            if self.options.is_help_channel(channel.parent_id, parent.name if parent else None):
                return True
        elif self.options.is_help_channel(channel.id, getattr(channel, "name", None)):
            return True
        return self.mentioned(message)

    def mentioned(self, message: discord.Message) -> bool:
        # not user.mentioned_in(): that is true for every @everyone, and those are not for us
        if self.user is not None and any(u.id == self.user.id for u in message.mentions):
            return True
        own_role = message.guild.self_role if message.guild else None
        return own_role is not None and own_role in message.role_mentions

    async def on_message(self, message: discord.Message) -> None:
        if not self.addressed(message):
            return
        try:
            await self.diagnose_message(message)
        except Exception as error:  # logged in full for us; a short apology for the person
            log.error("diagnosing message %s failed: %r", message.id, error, exc_info=error)
            await self._quietly(message.reply(APOLOGY, allowed_mentions=NO_PINGS, mention_author=False))

    async def diagnose_message(self, message: discord.Message) -> None:
        text, name, problems = await self.gather(message)
        context = Context("discord", str(message.author.id), str(channel_id(message.channel)))
        reply = await asyncio.to_thread(self.conversation.on_message, text, context, name) if text.strip() else None
        if reply is None:
            if problems or self.mentioned(message) or message.guild is None:
                notice = render_notice(" ".join(problems) or NOT_A_LOG).messages[0]
                await message.reply(notice.content, allowed_mentions=NO_PINGS, mention_author=False)
            return
        rendered = render_reply(reply, self.options.article_url)
        if problems:
            rendered.messages[0].content = (safe(" ".join(problems)) + "\n" + rendered.messages[0].content)[:2000]
        await self.send_report(message, rendered, self.check_token(reply, context))

    def check_token(self, reply: Reply | None, context: Context) -> str | None:
        """A Check now button's token when a live check could confirm one of the answer's diagnoses."""
        if reply is None or reply.report is None or not any(checkable(d) for d in reply.report.deliveries):
            return None
        return self.memory.keep(reply, context.user)

    async def gather(self, message: discord.Message) -> tuple[str, str, list[str]]:
        """The message's text and its text attachments, as pasted; and what could not be read."""
        text = message_text(message.content or "", self.user.id if self.user else None)
        texts, names, problems = await self.files.read(message.attachments, len(text.encode("utf-8", "replace")))
        return "\n".join(p for p in (text, *texts) if p.strip()), ", ".join(names) or "message", problems

    async def send_report(self, message: discord.Message, rendered: DiscordReply, check: str | None = None) -> None:
        """Short answers as a reply; long ones in a thread on the message, or the thread it is in."""
        view = feedback_view(rendered.diagnoses, check)
        if not rendered.long:
            page = rendered.messages[0]
            await message.reply(
                page.content or None, embeds=page.embeds, view=view, allowed_mentions=NO_PINGS, mention_author=False
            )
            return
        target = message.channel
        if isinstance(target, discord.TextChannel):
            try:
                target = await message.create_thread(name=rendered.thread_name, auto_archive_duration=1440)
            except discord.HTTPException as error:  # no thread permission: everything in one reply
                log.info("could not open a thread (%s); answering in the channel", error)
                page = rendered.messages[0]
                await message.reply(
                    page.content or None,
                    embeds=page.embeds,
                    view=view,
                    files=_report_file(rendered),
                    allowed_mentions=NO_PINGS,
                    mention_author=False,
                )
                return
        for index, page in enumerate(rendered.messages):
            last = index == len(rendered.messages) - 1
            await target.send(
                page.content or None,
                embeds=page.embeds,
                allowed_mentions=NO_PINGS,
                view=view if last else None,
                files=_report_file(rendered) if last else [],
            )

    # --- app commands ----------------------------------------------------------------------

    def context_of(self, interaction: discord.Interaction) -> Context:
        """Who asks where: roles (ids) are the user's groups, so WHYFAILED_ALLOWED_USERS may name a role."""
        roles = getattr(interaction.user, "roles", [])
        groups = tuple(str(r.id) for r in roles if not r.is_default())
        return Context("discord", str(interaction.user.id), str(channel_id(interaction.channel)), groups)

    async def answer_command(self, interaction: discord.Interaction, arguments: str, public: bool = False) -> None:
        context = self.context_of(interaction)
        # decided before deferring: the "thinking" message's visibility is the answer's visibility
        ephemeral = not (public and self.conversation.may_query(context))
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
        # off the loop, where it cannot stall the heartbeat: an address may scan logs, and the first
        # kb search builds its index (kbsearch's one connection is shared across threads, under a lock)
        reply = await asyncio.to_thread(self.conversation.on_command, arguments, context)
        if reply.kind in ("refusal", "notice", "help"):
            ephemeral = True
        await self.follow_up(interaction, reply, ephemeral)

    async def follow_up(
        self, interaction: discord.Interaction, reply: Reply | None, ephemeral: bool, check: str | None = None
    ) -> None:
        rendered = render_reply(reply, self.options.article_url) if reply else render_notice(NOT_A_LOG)
        view = feedback_view(rendered.diagnoses, check)
        for index, page in enumerate(rendered.messages):
            last = index == len(rendered.messages) - 1
            await interaction.followup.send(
                page.content or discord.utils.MISSING,
                embeds=page.embeds,
                ephemeral=ephemeral,
                allowed_mentions=NO_PINGS,
                view=view if last and view else discord.utils.MISSING,
                files=_report_file(rendered) if last else discord.utils.MISSING,
            )

    async def diagnose_for(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The context menu: any message, diagnosed for the person who asked, alone."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        text, name, problems = await self.gather(message)
        context = Context("discord", str(interaction.user.id), str(channel_id(interaction.channel)))
        reply = await asyncio.to_thread(self.conversation.on_message, text, context, name) if text.strip() else None
        if reply is None and problems:
            reply = Reply("notice", text=" ".join(problems))
        await self.follow_up(interaction, reply, ephemeral=True, check=self.check_token(reply, context))

    async def check_for(self, interaction: discord.Interaction, token: str) -> None:
        """Check now: the core decides who may and how often; the checks (seconds of DNS) run in a
        thread, off the loop and its heartbeat; the checked answer goes to the clicker alone."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        kept = self.memory.recall(token)
        context = self.context_of(interaction)
        reply = await asyncio.to_thread(self.conversation.check_reply, kept.reply if kept else None, context)
        await self.follow_up(interaction, reply, ephemeral=True)

    async def on_app_command_error(self, interaction: discord.Interaction, error: Exception) -> None:
        log.error("app command failed: %r", error, exc_info=error)
        await apologise(interaction)

    @staticmethod
    async def _quietly(coroutine) -> None:
        try:
            await coroutine
        except discord.HTTPException as error:  # the apology itself failed (Discord down?): the log has both
            log.error("could not apologise: %r", error)


def register_commands(bot: DiscordBot) -> None:
    group = app_commands.Group(name="whyfailed", description="Why an email was not delivered")

    @group.command(name="address", description="The latest deliveries to or from an address, or a @domain")
    @app_commands.describe(
        address="user@example.org, or @example.org for a domain's recent failures",
        since="Only what was seen in the last 90m, 2h, 7d...",
        public="Show the answer to the channel (default: only to you)",
        check="Also check now what the diagnosis blames: DNS, reverse DNS, blocklists, SPF/DKIM/DMARC",
    )
    async def address(
        interaction: discord.Interaction,
        address: str,
        since: str | None = None,
        public: bool = False,
        check: bool = False,
    ):
        arguments = f"{address} --since {since}" if since else address
        await bot.answer_command(interaction, arguments + (" --check" if check else ""), public)

    @group.command(name="kb", description="Search the knowledge base (words, an article id, or a code like 5.7.1)")
    async def kb(interaction: discord.Interaction, query: str):
        await bot.answer_command(interaction, f"kb {query}")

    @group.command(name="help", description="What whyfailed reads and how to ask it")
    async def help_(interaction: discord.Interaction):
        await bot.answer_command(interaction, "help")

    async def diagnose(interaction: discord.Interaction, message: discord.Message):
        await bot.diagnose_for(interaction, message)

    bot.tree.add_command(group)
    bot.tree.add_command(app_commands.ContextMenu(name=CONTEXT_MENU, callback=diagnose))


# --- helpers -----------------------------------------------------------------------------------


def _report_file(rendered: DiscordReply) -> list[discord.File]:
    if not (rendered.truncated and rendered.full_report):
        return []
    return [discord.File(io.BytesIO(rendered.full_report.encode("utf-8")), filename=REPORT_FILE)]


# --- serving -----------------------------------------------------------------------------------


class DiscordSetupError(Exception):
    """The bot cannot start; the message says what to fix."""


def point_at(options: DiscordSettings) -> None:
    """discord.py keeps its endpoints in class attributes: set them from the settings."""
    import yarl
    from discord.gateway import DiscordWebSocket

    discord.http.Route.BASE = options.api_url.rstrip("/")
    if options.gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(options.gateway_url)


async def run(options: DiscordSettings, settings: Settings) -> None:
    """Connect and answer until stopped; start-up problems become DiscordSetupError."""
    import signal

    bot = DiscordBot(settings, options)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(bot.close()))
    except (NotImplementedError, RuntimeError):  # not on this platform or thread: Ctrl-C still works
        pass
    try:
        async with bot:
            await bot.start(options.token)
    except SETUP_ERRORS as error:
        raise setup_error(error) from None


SETUP_ERRORS = (discord.PrivilegedIntentsRequired, discord.LoginFailure, discord.GatewayNotFound) + (
    discord.ConnectionClosed,
    discord.HTTPException,
    OSError,
)


def setup_error(error: BaseException) -> DiscordSetupError:
    """What a failure to connect means for the person starting the bot."""
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return DiscordSetupError(INTENT_HELP)
    if isinstance(error, discord.LoginFailure):
        return DiscordSetupError("Discord refused DISCORD_TOKEN: reset the token on the Bot page and set it again.")
    return DiscordSetupError(f"cannot connect to Discord: {error}")


def serve(options: DiscordSettings, settings: Settings) -> None:
    if problems := options.problems():
        raise DiscordSetupError("\n".join(problems))
    point_at(options)
    asyncio.run(run(options, settings))
