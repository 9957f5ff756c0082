"""The console surface: the chat bot in a terminal, no tokens, no network.

Paste a log and end it with an empty line (or Ctrl-D); type /whyfailed ADDRESS, /kb QUERY,
/help, /quit. Piped input works the same way, one message per blank-line-separated block.
"""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from bot.conversation import Context, Conversation, Reply
from bot.render.common import printable
from bot.render.text import print_report

PROMPT = "whyfailed> "
GREETING = "Paste a mail log or bounce, then an empty line. /help for commands, /quit to leave."


def render_reply(reply: Reply | None, console: Console) -> None:
    if reply is None:
        console.print("[dim]That does not look like a mail log or a bounce; nothing to diagnose.[/dim]")
        return
    if reply.kind == "report" and reply.report is not None:
        print_report(reply.report, console)
    elif reply.kind == "articles":
        first, *others = reply.articles
        console.print(Markdown(f"# {first.title}\n\n{first.body}"))
        if others:
            console.print("[dim]Also: " + ", ".join(escape(a.id) for a in others) + "[/dim]")
    else:
        console.print(escape(printable(reply.text)))  # a notice may quote what was typed or pasted


def _messages(stream: TextIO, console: Console, interactive: bool):
    """Yield each message: a /command line, or the lines of a paste up to an empty line."""
    block: list[str] = []
    while True:
        if interactive and not block:
            console.print(PROMPT, end="")
        line = stream.readline()
        if not line:  # end of input
            if block:
                yield "\n".join(block)
            return
        line = line.rstrip("\n")
        if not block and line.startswith("/"):
            yield line
            continue
        if not line.strip():
            if block:
                yield "\n".join(block)
                block = []
            continue
        block.append(line)


def run_console(conversation: Conversation, stream: TextIO | None = None, console: Console | None = None) -> int:
    stream = stream or sys.stdin
    interactive = stream.isatty()
    console = console or Console(highlight=False)
    context = Context(surface="console", user=_whoami())
    if interactive:
        console.print(f"[bold]whyfailed chat[/bold] — {GREETING}")
    for message in _messages(stream, console, interactive):
        if message.startswith("/"):
            command, _, rest = message[1:].partition(" ")
            command = command.lower()
            if command in ("quit", "exit", "q"):
                break
            if command == "help":
                reply = conversation.on_command("help", context)
            elif command == "kb":
                reply = conversation.on_command(f"kb {rest}", context)
            elif command == "whyfailed":
                reply = conversation.on_command(rest, context)
            else:
                reply = Reply("notice", text=f"Unknown command /{command}. Try /help.")
        else:
            reply = conversation.on_message(message, context)
        render_reply(reply, console)
        console.print()
    return 0


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "console"
