"""Prometheus metrics for the web, worker and ingest processes.

Labels take values from small, fixed sets only: surfaces, request kinds, HTTP status codes,
knowledge-base ids (a stable taxonomy) and the names operators give their sources. Never an
address, a channel, a user or a line of a log: those would leak what the audit table guards,
and every distinct label value is a new time series kept forever.
"""

from __future__ import annotations

import platform
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    start_http_server,
)

from bot import __version__

# seconds: Slack wants its ack within 3 s, so the buckets are fine-grained below that
_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)

BUILD = Info("whyfailed_build", "The running whyfailed version.")
BUILD.info({"version": __version__, "python": platform.python_version()})

HTTP_REQUESTS = Counter(
    "whyfailed_http_requests_total",
    "HTTP requests to the web process, by route, Slack request kind and status code.",
    ["route", "kind", "status"],
)
ACK_SECONDS = Histogram(
    "whyfailed_http_ack_seconds",
    "Time from a Slack request's arrival to our HTTP answer (Slack retries after 3 s).",
    ["kind"],
    buckets=_ACK_BUCKETS,
)
SLACK_RETRIES = Counter(
    "whyfailed_slack_retries_total", "Requests Slack resent (X-Slack-Retry-Num), by retry reason.", ["reason"]
)
REQUESTS = Counter(
    "whyfailed_requests_total",
    "Chat requests the core handled, by surface, kind (message or command) and outcome "
    "(report, articles, help, refusal, notice, not-a-log, error).",
    ["surface", "kind", "outcome"],
)
DIAGNOSES = Counter(
    "whyfailed_diagnoses_total", "Diagnoses given in chat answers, by knowledge-base id.", ["surface", "diagnosis"]
)
LOOKUP_SECONDS = Histogram(
    "whyfailed_lookup_seconds",
    "Time to answer /whyfailed ADDRESS from the index or the logs.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REPLIES = Counter(
    "whyfailed_replies_sent_total",
    "Messages sent back to a chat, by surface and by way (chat.postMessage, chat.postEphemeral, response_url...).",
    ["surface", "via"],
)
INGEST_LINES = Counter("whyfailed_ingest_lines_total", "Log lines indexed, by configured source.", ["source"])
INGEST_DELIVERIES = Counter(
    "whyfailed_ingest_deliveries_total", "Delivery stories written or updated, by configured source.", ["source"]
)
INGEST_ERRORS = Counter(
    "whyfailed_ingest_errors_total", "Reads or writes of a source that failed (retried later).", ["source"]
)
SOURCE_LAG = Gauge("whyfailed_source_lag_bytes", "Bytes of a file source's live log not yet indexed.", ["source"])
INGEST_LAST_READ = Gauge(
    "whyfailed_ingest_last_read_timestamp_seconds", "When a source was last read through, as a Unix time.", ["source"]
)


def exposition() -> tuple[bytes, str]:
    """The text exposition format of every metric, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve_metrics(port: int | None, host: str = "0.0.0.0") -> None:
    """For the worker and ingest processes, which have no web server of their own: /metrics
    on `port` in a daemon thread (prometheus_client's own), or nothing when no port is set."""
    if port:
        start_http_server(port, host)


class Timer:
    """`with Timer() as t: ...; t.seconds`: monotonic, for histograms."""

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
