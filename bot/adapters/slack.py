"""The Slack surface: slack-bolt listeners over the conversation core.

Each listener acks, turns Slack's payload into the core's call, renders the Reply as Block Kit
(bot.render.slack) and sends it. Nothing here parses a log. What is Slack's alone lives here:
undoing Slack's rewriting of pasted text, reading shared files (slack_files), answering in threads,
ignoring Slack's retries, and remembering (bounded, in memory) which report a button refers to.
"""

from __future__ import annotations

import inspect
import logging
import re
import secrets
import sqlite3
import threading
import time
from concurrent.futures import Executor
from dataclasses import replace
from urllib.parse import urlparse

from slack_bolt import App, Args, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from bot.adapters.memory import Memory
from bot.adapters.slack_files import file_info, read_text_file
from bot.adapters.slack_settings import SlackSettings
from bot.conversation import Context, Conversation, Reply, store_audit
from bot.render.slack import (
    ACTION_ARTICLE,
    ACTION_CHECK,
    ACTION_EVIDENCE,
    ACTION_HELPFUL,
    ACTION_NOT_HELPFUL,
    ACTION_SHARE,
    FULL_IN_DM,
    FULL_WITH_REQUESTER,
    SlackMessage,
    context_block,
    render_article,
    render_evidence,
    render_notice,
    render_reply,
    render_report,
)
from bot.serve.metrics import REPLIES
from bot.settings import Settings

log = logging.getLogger("whyfailed.slack")

COMMAND = "/whyfailed"
SHORTCUT = "diagnose_delivery_problem"
APOLOGY = "Sorry, something went wrong on my side while reading that. The error was logged; please try again later."
FORGOTTEN = "That report is no longer in my memory (I was restarted, or it is old). Paste the log again."
NOT_YOURS = (
    "Sorry, the evidence behind a /whyfailed answer is mail log data, and /whyfailed is not enabled for you here. "
    "Ask the person who shared it, or an admin to add this channel or your account to the allowed list."
)
NOT_A_LOG = (
    "That does not look like a mail log or a bounce message, so there is nothing to diagnose. "
    "Paste log lines (a code block is fine) or try /whyfailed help."
)
HANDLED_SUBTYPES = (None, "file_share", "thread_broadcast")  # others are edits, joins, bots...
RATE_LIMIT_RETRIES = 3

# --- Slack's rewriting, undone ---------------------------------------------------------------

_MARKUP = re.compile(r"<([^<>\n]{1,2000})>")
_SPECIAL = {"!here": "@here", "!channel": "@channel", "!everyone": "@everyone"}


def _plain(markup: str) -> str:
    target, _, label = markup.partition("|")
    if target.startswith(("mailto:", "http://", "https://")):
        return label or target.removeprefix("mailto:")
    if target.startswith(("@", "#")):
        return target[0] + (label or target[1:])
    if target.startswith("!"):
        return label or _SPECIAL.get(target, "@" + target[1:])
    return f"<{markup}>"  # not Slack markup: leave it as it came


def unslack(text: str, bot_user_id: str | None = None) -> str:
    """Slack's message text back to what was pasted: links and mailto: unwrapped, `&lt; &gt;
    &amp;` decoded (&amp; last, so a typed "&lt;" survives), ``` fences dropped."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>\s*", "", text)
    text = _MARKUP.sub(lambda m: _plain(m.group(1)), text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    lines = [line.replace("```", "") for line in text.split("\n") if line.strip() != "```"]
    return "\n".join(lines).strip("\n")


# --- sending -------------------------------------------------------------------------------


def _rate_limited(client: WebClient) -> WebClient:
    """HTTP 429: wait Retry-After, then try again (slack_sdk retries only connection errors by default)."""
    if not any(isinstance(h, RateLimitErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES))
    return client


def respond(response_url: str, message: SlackMessage, ephemeral: bool = True, **extra) -> None:
    """A follow-up through response_url, with the same 429 handling as the Web API (bolt's own
    `respond` builds a WebhookClient without retry handlers)."""
    hook = WebhookClient(response_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)])
    body = {"response_type": "ephemeral" if ephemeral else "in_channel", "text": message.text, "blocks": message.blocks}
    result = hook.send_dict({**body, "replace_original": False, **extra})
    if result.status_code != 200:
        log.warning("response_url answered %s: %s", result.status_code, result.body[:200])
    else:
        REPLIES.labels("slack", "response_url").inc()


def serialised_audit(target: str):
    """The audit writer the Slack bot uses: one row per query, one write at a time."""
    return _one_at_a_time(store_audit(target))


def _one_at_a_time(write):
    """Audit rows from bolt's listener threads, one after the other: two first writes at once race
    to create the table, and SQLite refuses the loser outright (database is locked)."""
    lock = threading.Lock()

    def serialised(*args) -> None:
        with lock:
            write(*args)

    return serialised


class SlackBot:
    """The listeners, and the little state they share."""

    def __init__(
        self,
        settings: Settings,
        slack: SlackSettings,
        conversation: Conversation | None = None,
        work: Executor | None = None,
    ):
        self.settings, self.slack = settings, slack
        self.work = work
        self.conversation = conversation or Conversation(settings, audit=serialised_audit(settings.store_target))
        self.memory = Memory()
        self._claims = Memory()
        self._groups: tuple[float | None, dict[str, set[str]]] = (None, {})
        self._groups_lock = threading.Lock()
        self._trusted_hosts = {"files.slack.com", urlparse(slack.api_url).hostname}

    def register(self, app: App) -> App:
        app.middleware(self.drop_retries)
        app.event("message")(self._handed_over(self.on_message))
        app.event("app_mention")(self._handed_over(self.on_mention))
        app.command(COMMAND)(self._handed_over(self.on_command))
        app.shortcut(SHORTCUT)(self._handed_over(self.on_shortcut))
        app.action(ACTION_EVIDENCE)(self._handed_over(self.on_evidence))
        app.action(ACTION_ARTICLE)(self._handed_over(self.on_article))
        app.action(re.compile(f"^({ACTION_HELPFUL}|{ACTION_NOT_HELPFUL})$"))(self._handed_over(self.on_feedback))
        app.action(ACTION_SHARE)(self._handed_over(self.on_share))
        app.action(ACTION_CHECK)(self._handed_over(self.on_check))
        app.error(self.on_error)
        return app

    def _handed_over(self, listener):
        """With a work pool: ack at once in bolt's pool, and do the work in ours. bolt answers Slack
        only once a listener has called ack(), and it runs listeners in one pool: under a burst, the
        acks of commands and clicks would queue behind diagnoses already running and miss Slack's 3 s."""
        if self.work is None:
            return listener
        names = [name for name in inspect.getfullargspec(listener).args if name != "self"]

        def handed_over(args: Args) -> None:
            args.ack()
            kwargs = {name: getattr(args, name) for name in names}
            self.work.submit(self._guarded, listener, kwargs, args.body, args.client)

        return handed_over

    def _guarded(self, listener, kwargs: dict, body: dict, client: WebClient) -> None:
        try:
            listener(**kwargs)
        except Exception as error:  # what bolt's error handler does for listeners it runs itself
            self.on_error(error, body, client)

    # --- retries ---------------------------------------------------------------------------

    def drop_retries(self, body: dict, request, next):
        """Slack resends an event it thinks we missed. An event we already took (same event_id),
        or one Slack resent only because our 200 was slow (reason http_timeout: the first copy
        did arrive), is answered 200 and goes no further, so it never yields a second reply."""
        retry = int((request.headers.get("x-slack-retry-num") or ["0"])[0] or 0)
        reason = (request.headers.get("x-slack-retry-reason") or [""])[0]
        event_id = body.get("event_id")
        # http_timeout first, and without marking the event seen: under load the resent copy can
        # overtake the first one, which must then still be answered
        if (retry > 0 and reason == "http_timeout") or (event_id and not self.memory.first_time(f"event:{event_id}")):
            log.info("ignored a repeated event %s (retry %s, %s)", event_id, retry, reason or "no reason")
            return BoltResponse(status=200, body="")
        next()

    # --- pasted logs -----------------------------------------------------------------------

    def on_message(self, event: dict, client: WebClient, context) -> None:
        if event.get("subtype") not in HANDLED_SUBTYPES or event.get("bot_id") or event.get("hidden"):
            return
        self._diagnose_message(event, event.get("channel"), client, context.bot_user_id, mentioned=False)

    def on_mention(self, event: dict, client: WebClient, context) -> None:
        self._diagnose_message(event, event.get("channel"), client, context.bot_user_id, mentioned=True)

    def _diagnose_message(self, message: dict, channel: str, client: WebClient, bot_id, mentioned: bool) -> None:
        text, name, problems = self._gather(message, client, bot_id)
        user = message.get("user") or "unknown"
        reply = self.conversation.on_message(text, Context("slack", user, channel), name) if text.strip() else None
        thread_ts = message.get("thread_ts") or message["ts"]
        # a mention arrives twice (message and app_mention): whichever answers first claims it
        if reply is None and not (mentioned or problems):
            return
        if not self._claims.first_time(f"{channel}:{message['ts']}"):
            return
        if reply is None:
            note = " ".join(problems) if problems else NOT_A_LOG
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=render_notice(note).text)
            return
        self._post(client, channel, thread_ts, render_reply(reply, self.memory.keep(reply, user)))

    def _gather(self, message: dict, client: WebClient, bot_id) -> tuple[str, str, list[str]]:
        """The message's text and its text files, as pasted; and what could not be read."""
        parts, names, problems = [unslack(message.get("text") or "", bot_id)], [], []
        for file in message.get("files") or []:
            name = file.get("name")
            try:
                info = file_info(file, client)
                name = info.get("name") or name  # a check_file_info stub has none: files.info does
                content = read_text_file(info, client, self._trusted_hosts, self.settings.max_paste_bytes)
            except (OSError, SlackApiError, ValueError) as error:
                log.warning("could not read file %s: %s", file.get("id"), error)
                problems.append(f"I could not download {name or 'the file'}: {error}.")
                continue
            if content is not None:
                parts.append(content)
                names.append(name or file.get("id") or "file")
        return "\n".join(p for p in parts if p), ", ".join(names) or "message", problems

    def _post(self, client: WebClient, channel: str, thread_ts: str, message: SlackMessage) -> None:
        client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=message.text, blocks=message.blocks, unfurl_links=False
        )
        if message.truncated and message.full_report:
            self._attach(client, channel, thread_ts, message.full_report)

    def _attach(self, client: WebClient, channel: str, thread_ts: str | None, report: str) -> None:
        try:
            client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                content=report,
                filename="whyfailed-report.md",
                title="whyfailed: the full report",
            )
        except SlackApiError as error:  # files:write missing, say: the message itself still stands
            log.warning("could not attach the full report: %s", error.response.get("error"))

    # --- /whyfailed ------------------------------------------------------------------------

    def on_command(self, ack, command: dict, client: WebClient) -> None:
        ack()  # Slack's 3-second rule: an empty 200 now, the answer through response_url
        user, channel = command["user_id"], command.get("channel_id")
        context = Context("slack", user, channel, self._user_groups(client, user))
        reply = self.conversation.on_command(unslack(command.get("text") or ""), context)
        token = self.memory.keep(reply, user, guarded=True)
        message = render_reply(reply, token, whole=FULL_IN_DM)
        respond(command["response_url"], message, ephemeral=reply.ephemeral)
        if message.truncated and message.full_report:  # private answer, so the file goes to a DM
            try:
                direct = client.conversations_open(users=user)["channel"]["id"]
            except SlackApiError as error:
                log.warning("could not open a DM for the full report: %s", error.response.get("error"))
                return
            self._attach(client, direct, None, message.full_report)

    def _user_groups(self, client: WebClient, user: str) -> tuple[str, ...]:
        """The user groups (S...) of a user, when the allowed list names any; cached 5 minutes."""
        if not any(entry.startswith("S") for entry in self.settings.allowed_users):
            return ()
        with self._groups_lock:  # one fetch for many simultaneous commands
            fetched, groups = self._groups
            if fetched is None or time.monotonic() - fetched > 300:
                try:
                    found = client.usergroups_list(include_users=True).get("usergroups") or []
                    groups = {g["id"]: set(g.get("users") or ()) for g in found}
                except SlackApiError as error:
                    log.warning("usergroups.list failed (%s): is usergroups:read granted?", error.response.get("error"))
                self._groups = (time.monotonic(), groups)
        return tuple(sorted(g for g, members in groups.items() if user in members))

    # --- the message shortcut --------------------------------------------------------------

    def on_shortcut(self, ack, shortcut: dict, client: WebClient, context) -> None:
        ack()
        message, channel = shortcut["message"], shortcut["channel"]["id"]
        user = shortcut["user"]["id"]
        text, name, problems = self._gather(message, client, context.bot_user_id)
        reply = self.conversation.on_message(text, Context("slack", user, channel), name) if text.strip() else None
        if reply is None:
            respond(shortcut["response_url"], render_notice(" ".join(problems) or NOT_A_LOG))
            return
        rendered = render_reply(reply, self.memory.keep(reply, user))
        try:
            self._post(client, channel, message.get("thread_ts") or message["ts"], rendered)
        except SlackApiError as error:  # not a member of that channel: answer the person alone
            log.info("shortcut reply in channel failed (%s), answering ephemerally", error.response.get("error"))
            respond(shortcut["response_url"], rendered)

    # --- buttons ---------------------------------------------------------------------------

    def on_evidence(self, ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        token, _, index = (action.get("value") or "").rpartition(":")
        kept = self.memory.recall(token)
        report = kept.reply.report if kept else None
        if report is None or not index.isdigit() or int(index) >= len(report.deliveries):
            self._tell(body, client, render_notice(FORGOTTEN))
            return
        if kept.guarded and not self._may_see(body, client, kept.user):
            self._tell(body, client, render_notice(NOT_YOURS))
            return
        self._tell(body, client, render_evidence(report.deliveries[int(index)]))

    def on_check(self, ack, body: dict, action: dict, client: WebClient) -> None:
        """Check now, for one recipient of a remembered answer: the core decides who may and how
        often (checks can take seconds: this runs after the ack, in the work pool when there is
        one); the checked answer goes to the clicker alone, as evidence does."""
        ack()
        token, _, index = (action.get("value") or "").rpartition(":")
        kept = self.memory.recall(token)
        report = kept.reply.report if kept else None
        asked = None
        if report is not None and index.isdigit() and int(index) < len(report.deliveries):
            one = replace(report, deliveries=[report.deliveries[int(index)]])
            asked = Reply("report", report=one, address=kept.reply.address)
        clicker = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        context = Context("slack", clicker, channel, self._user_groups(client, clicker))
        reply = self.conversation.check_reply(asked, context)
        if reply.kind != "report":
            self._tell(body, client, render_reply(reply, ""))
            return
        # kept for its own Show evidence button, under the same requester and guard as the original
        again = self.memory.keep(reply, kept.user, kept.guarded)
        self._tell(body, client, render_report(reply.report, again))

    def _may_see(self, body: dict, client: WebClient, requester: str) -> bool:
        """A shared /whyfailed answer is seen by the whole channel; its evidence (more log lines)
        only by the requester and by whoever could have run the query there themselves."""
        clicker = body["user"]["id"]
        if clicker == requester:
            return True
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        return self.conversation.may_query(Context("slack", clicker, channel, self._user_groups(client, clicker)))

    def on_article(self, ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        from bot.knowledge import load_articles

        article = load_articles().get(action.get("value") or "")
        self._tell(body, client, render_article(article) if article else render_notice("No such article."))

    def on_feedback(self, ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        helpful = action["action_id"] == ACTION_HELPFUL
        diagnosis, _, reference = (action.get("value") or "").partition("|")
        save_feedback(
            self.settings.store_target,
            user=body["user"]["id"],
            channel=(body.get("channel") or {}).get("id"),
            diagnosis=diagnosis[:100],
            helpful=helpful,
            message_ts=(body.get("container") or {}).get("message_ts"),
            reference=reference[:100],
        )
        thanks = "Thanks, noted as helpful." if helpful else "Thanks, noted as not helpful: we will look at this case."
        self._tell(body, client, render_notice(thanks))

    def on_share(self, ack, body: dict, action: dict) -> None:
        ack()
        token = action.get("value") or ""
        kept = self.memory.recall(token)
        if kept is None or kept.user != body["user"]["id"]:
            respond(body["response_url"], render_notice("That answer has expired; run /whyfailed again to share it."))
            return
        reply = kept.reply
        # a cut report is not attached again in the channel (the bot may not even be a member there)
        public = Reply(reply.kind, reply.text, reply.report, reply.articles, ephemeral=False)
        shared = render_reply(public, token, whole=FULL_WITH_REQUESTER)
        by = f"Shared by <@{body['user']['id']}>"  # a real mention, ours: the person who shared it
        shared.blocks.append(context_block(by))
        respond(body["response_url"], shared, ephemeral=False)

    def _tell(self, body: dict, client: WebClient, message: SlackMessage) -> None:
        """Only to the person who clicked: in the thread of a channel message, or through
        response_url when the button sat in an ephemeral message (those have no ts to thread on)."""
        container, channel = body.get("container") or {}, (body.get("channel") or {}).get("id")
        if container.get("is_ephemeral") or not channel or not body.get("message"):
            respond(body["response_url"], message)
            return
        thread_ts = body["message"].get("thread_ts") or body["message"]["ts"]
        client.chat_postEphemeral(
            channel=channel, user=body["user"]["id"], thread_ts=thread_ts, text=message.text, blocks=message.blocks
        )

    # --- errors ----------------------------------------------------------------------------

    def on_error(self, error: Exception, body: dict, client: WebClient) -> None:
        """Logged in full for us; a short apology for the person, never a traceback."""
        log.error("listener failed: %r", error, exc_info=error)
        try:
            if body.get("response_url"):
                respond(body["response_url"], render_notice(APOLOGY))
            elif (event := body.get("event") or {}).get("channel") and event.get("ts"):
                thread_ts = event.get("thread_ts") or event["ts"]
                client.chat_postMessage(channel=event["channel"], thread_ts=thread_ts, text=APOLOGY)
        except Exception as second:  # the apology itself failed (Slack down?): the log has both
            log.error("could not apologise: %r", second)


def save_feedback(target: str, **row) -> None:
    """One row per Helpful / Not helpful click, in the index's `feedback` table."""
    from bot.store import Store, StoreError

    try:
        store = Store(target, patience=5.0)
        try:
            store.record_feedback("slack", **row)
        finally:
            store.close()
    except (StoreError, sqlite3.Error) as error:  # a full disk should not turn a thank-you into an apology
        log.error("could not store feedback: %s", error)


class _NoTokenWarning(logging.Filter):
    # bolt reads SLACK_BOT_TOKEN itself and warns that our client's copy of it wins: it is the same token
    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.App").addFilter(_NoTokenWarning())


def create_app(
    settings: Settings | None = None,
    client: WebClient | None = None,
    *,
    slack: SlackSettings | None = None,
    conversation: Conversation | None = None,
    listener_executor: Executor | None = None,
    work_executor: Executor | None = None,
) -> App:
    """A bolt App with every whyfailed listener. `client` (or slack.api_url) decides where Web API
    calls go; bolt checks the token with auth.test here, so a bad token fails now, not later.
    With `work_executor`, listeners only ack in bolt's `listener_executor` and work in this one."""
    settings = settings or Settings()
    slack = slack or SlackSettings()
    client = _rate_limited(client or WebClient(token=slack.bot_token, base_url=slack.api_url))
    extra = {"listener_executor": listener_executor} if listener_executor else {}
    # Socket Mode needs no secret; a random one (never a fixed placeholder) keeps HTTP closed then
    secret = slack.signing_secret or secrets.token_hex(16)
    app = App(client=client, signing_secret=secret, name="whyfailed", **extra)
    SlackBot(settings, slack, conversation, work_executor).register(app)
    return app
