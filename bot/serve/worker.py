"""The `worker` process: Slack in Socket Mode and/or the Discord gateway, whichever are
configured, both in one process when both are (Discord on the asyncio loop in the main thread,
Socket Mode in the threads slack_sdk starts for it).

Shutdown: on SIGTERM the Socket Mode connection closes and new Discord messages are ignored
(no new work), answers being worked on finish (bolt's listener pool is drained, Discord's
event tasks awaited), then the gateway closes, all within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.error import URLError

from bot.adapters.discord_settings import DiscordSettings
from bot.adapters.slack_settings import SlackSettings
from bot.logsetup import event
from bot.serve.shutdown import Shutdown
from bot.settings import Settings

log = logging.getLogger("whyfailed.worker")

NOTHING_CONFIGURED = (
    "the worker has nothing to run: set SLACK_BOT_TOKEN and SLACK_APP_TOKEN for Slack in Socket Mode, "
    "and/or DISCORD_TOKEN for Discord (see .env.example). Slack in HTTP mode runs in the web process."
)


class WorkerSetupError(Exception):
    """The worker cannot start; the message says what to fix."""


def surfaces(slack: SlackSettings, discord: DiscordSettings) -> list[str]:
    """The chat surfaces this worker runs: Slack when an app-level token is set, Discord when a token is."""
    found = []
    if slack.app_token:
        found.append("slack")
    if discord.token:
        found.append("discord")
    return found


def check(slack: SlackSettings, discord: DiscordSettings) -> list[str]:
    chosen = surfaces(slack, discord)
    if not chosen:
        raise WorkerSetupError(NOTHING_CONFIGURED)
    problems = slack.model_copy(update={"mode": "socket"}).problems() if "slack" in chosen else []
    problems += discord.problems() if "discord" in chosen else []
    if problems:
        raise WorkerSetupError("\n".join(problems))
    return chosen


class _SlackSocket:
    def __init__(self, slack: SlackSettings, settings: Settings):
        from slack_bolt.adapter.socket_mode import SocketModeHandler
        from slack_bolt.error import BoltError
        from slack_sdk.errors import SlackApiError

        from bot.adapters.slack import create_app, serialised_audit
        from bot.serve.metered import MeteredConversation
        from bot.serve.web import MeteredWebClient, Pools, count_replies

        self.pools = Pools(settings)
        try:
            client = MeteredWebClient(token=slack.bot_token, base_url=slack.api_url)
            conversation = MeteredConversation(settings, audit=serialised_audit(settings.store_target))
            app = create_app(
                settings,
                client,
                slack=slack,
                conversation=conversation,
                listener_executor=self.pools.ack,
                work_executor=self.pools.work,
            )
            count_replies(app)
            self.handler = SocketModeHandler(app, slack.app_token)
            self.handler.connect()  # apps.connections.open: a refused app token fails here, clearly
        except BoltError as error:
            raise WorkerSetupError(f"Slack refused the bot token: {error}. Check SLACK_BOT_TOKEN.") from None
        except SlackApiError as error:
            raise WorkerSetupError(f"Slack refused: {error.response.get('error')}. Check SLACK_APP_TOKEN.") from None
        except URLError as error:
            raise WorkerSetupError(f"cannot reach Slack at {slack.api_url} ({error.reason}).") from None
        event(log, "connected", process="worker", surface="slack", mode="socket")

    def stop_taking_work(self) -> None:
        self.handler.close()  # the WebSocket closes: Slack sends no more envelopes here

    def drain(self) -> None:
        self.pools.drain()


async def _run_discord(options: DiscordSettings, settings: Settings, shutdown: Shutdown) -> bool:
    """Answer on Discord until a stop is asked; True when the events in hand finished in time."""
    import signal

    from bot.adapters.discord import SETUP_ERRORS, DiscordBot, point_at, setup_error
    from bot.conversation import store_audit
    from bot.serve.metered import MeteredConversation

    class Bot(DiscordBot):
        async def on_message(self, message):
            if not shutdown.requested.is_set():  # stopping: take no new work
                await super().on_message(message)

    point_at(options)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    shutdown.on_request(lambda: loop.call_soon_threadsafe(stop.set))
    for sig in (signal.SIGTERM, signal.SIGINT):  # the loop's own handlers wake it at once
        loop.add_signal_handler(sig, shutdown.handle_signal, sig)
    bot = Bot(settings, options, conversation=MeteredConversation(settings, audit=store_audit(settings.store_target)))
    async with bot:
        running = asyncio.create_task(bot.start(options.token))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            stopping.cancel()
            try:
                running.result()
            except SETUP_ERRORS as error:
                raise WorkerSetupError(str(setup_error(error))) from None
            return True
        finished = await _finish_events(shutdown.remaining())
        await bot.close()
        await asyncio.wait({running}, timeout=max(shutdown.remaining(), 1.0))
    return finished


async def _finish_events(timeout: float) -> bool:
    # discord.py runs each event handler as a task named "discord.py: <event>" (Client._schedule_event)
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("discord.py: on_") and not t.done()]
    if not tasks:
        return True
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return not pending


def run_worker(slack: SlackSettings, discord: DiscordSettings, settings: Settings, shutdown: Shutdown) -> int:
    chosen = check(slack, discord)
    socket = _SlackSocket(slack, settings) if "slack" in chosen else None
    if socket is not None:
        shutdown.on_request(socket.stop_taking_work)
    discord_done = True
    try:
        if "discord" in chosen:
            discord_done = asyncio.run(_run_discord(discord, settings, shutdown))
            shutdown.request("discord closed")  # the gateway ended without a signal: stop Slack too
        else:
            shutdown.wait()
    finally:
        slack_done = shutdown.join(socket.drain, "Slack answers in flight") if socket is not None else True
    return shutdown.finished(discord_done and slack_done, surfaces=",".join(chosen))
