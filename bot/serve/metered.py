"""The conversation core, counted: every chat surface's requests, outcomes and diagnoses go
through here, so Slack (HTTP and Socket Mode) and Discord are measured the same way."""

from __future__ import annotations

from bot.conversation import Context, Conversation, Reply
from bot.serve import metrics


class MeteredConversation(Conversation):
    def on_message(self, text: str, context: Context, name: str = "paste") -> Reply | None:
        try:
            reply = super().on_message(text, context, name)
        except Exception:
            metrics.REQUESTS.labels(context.surface, "message", "error").inc()
            raise
        self._count(context, "message", reply)
        return reply

    def on_command(self, arguments: str, context: Context) -> Reply:
        try:
            reply = super().on_command(arguments, context)
        except Exception:
            metrics.REQUESTS.labels(context.surface, "command", "error").inc()
            raise
        self._count(context, "command", reply)
        return reply

    def _lookup(self, address, since):
        with metrics.LOOKUP_SECONDS.time():
            return super()._lookup(address, since)

    @staticmethod
    def _count(context: Context, kind: str, reply: Reply | None) -> None:
        metrics.REQUESTS.labels(context.surface, kind, reply.kind if reply else "not-a-log").inc()
        if reply is None or reply.report is None:
            return
        for delivery in reply.report.deliveries:
            if delivery.diagnosis is not None:  # ids come from knowledge/: a fixed, small set
                metrics.DIAGNOSES.labels(context.surface, delivery.diagnosis.id).inc()
