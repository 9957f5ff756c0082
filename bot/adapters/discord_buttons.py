"""Discord's persistent buttons (Helpful / Not helpful, Check now) and what they need: the
feedback rows, the apology when a click fails, and which channel a click counts for.

Buttons are dynamic items: their state rides in the custom_id, so a click on an answer sent
before a restart is still understood.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3

import discord

log = logging.getLogger("whyfailed.discord")

NO_PINGS = discord.AllowedMentions.none()
APOLOGY = "Sorry, something went wrong on my side while reading that. The error was logged; please try again later."


# --- feedback ----------------------------------------------------------------------------------


class FeedbackButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"whyfailed:fb:(?P<helpful>[01]):(?P<ids>[a-z0-9,-]{0,80})"
):
    """Helpful / Not helpful, one pair per answer: a vote on the answer as a whole, so it counts
    for each distinct diagnosis the answer gave (one feedback row per diagnosis id). The ids ride
    in the custom_id, so a click is understood even after a restart, with nothing kept in memory."""

    def __init__(self, helpful: bool, ids: str):
        style = discord.ButtonStyle.success if helpful else discord.ButtonStyle.secondary
        label = "Helpful" if helpful else "Not helpful"
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"whyfailed:fb:{int(helpful)}:{ids}"))
        self.helpful, self.ids = helpful, ids

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item, match: re.Match[str]):
        return cls(match["helpful"] == "1", match["ids"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            client = interaction.client
            row = {
                "user": str(interaction.user.id),
                "channel": str(channel_id(interaction.channel)),
                "guild": str(interaction.guild_id) if interaction.guild_id else None,
                "helpful": self.helpful,
                "message_id": str(interaction.message.id) if interaction.message else None,
            }
            await asyncio.to_thread(save_feedback, client.settings.store_target, self.ids.split(","), **row)
            thanks = "Thanks, noted as helpful." if self.helpful else "Thanks, noted as not helpful."
            await interaction.response.send_message(thanks, ephemeral=True, allowed_mentions=NO_PINGS)
        except Exception as error:
            log.error("feedback failed: %r", error, exc_info=error)
            await apologise(interaction)


class CheckButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"whyfailed:check:(?P<token>[A-Za-z0-9_-]{1,24})"
):
    """Check now: the token names the answer in the bot's bounded memory; after a restart the
    click still arrives and the core says the answer is gone."""

    def __init__(self, token: str):
        button = discord.ui.Button(
            label="Check now", style=discord.ButtonStyle.primary, custom_id=f"whyfailed:check:{token}"
        )
        super().__init__(button)
        self.token = token

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item, match: re.Match[str]):
        return cls(match["token"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.client.check_for(interaction, self.token)
        except Exception as error:
            log.error("check now failed: %r", error, exc_info=error)
            await apologise(interaction)


def feedback_view(diagnoses: list[str], check: str | None = None) -> discord.ui.View | None:
    """Helpful / Not helpful, and Check now when CHECK (a memory token) is given."""
    if not diagnoses:
        return None
    ids = ""
    for item in diagnoses:  # whole ids only, within the custom_id's room
        if len(ids) + len(item) + 1 > 80:
            break
        ids = f"{ids},{item}" if ids else item
    view = discord.ui.View(timeout=None)
    view.add_item(FeedbackButton(True, ids))
    view.add_item(FeedbackButton(False, ids))
    if check:
        view.add_item(CheckButton(check))
    return view


def save_feedback(target: str, diagnoses: list[str], **row) -> None:
    """One row per diagnosis id of the click, in the `feedback` table beside the index: counting
    the rows of one id then counts the votes on answers that gave it."""
    from bot.store import Store, StoreError

    try:
        store = Store(target, patience=5.0)
        try:
            for item in diagnoses:
                if item:
                    store.record_feedback("discord", diagnosis=item, **row)
        finally:
            store.close()
    except (StoreError, sqlite3.Error) as error:  # a full disk should not turn a thank-you into an apology
        log.error("could not store feedback: %s", error)


def channel_id(channel) -> int | None:
    """Threads count as their channel: an answer in a thread of an allowed channel stays allowed."""
    if channel is None:
        return None
    return getattr(channel, "parent_id", None) or channel.id


async def apologise(interaction: discord.Interaction) -> None:
    try:
        if interaction.response.is_done():
            await interaction.followup.send(APOLOGY, ephemeral=True, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(APOLOGY, ephemeral=True, allowed_mentions=NO_PINGS)
    except discord.HTTPException as error:
        log.error("could not apologise: %r", error)
