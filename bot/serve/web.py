"""The `web` process: Slack's HTTP mode (Events API, slash commands, interactivity) on $PORT,
with GET /healthz and GET /metrics beside it.

Shutdown: on SIGTERM the listening socket closes (no new requests), requests being read or
answered finish (the server joins their threads), then the answers already acked finish in the
listener pool (bolt acks first and works after, so a reply can still be on its way), all
within the grace period.
"""

from __future__ import annotations

import hmac
import io
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_sdk import WebClient

from bot.adapters.slack_serve import MAX_BODY, wsgi_app
from bot.adapters.slack_settings import SlackSettings
from bot.logsetup import event
from bot.serve import metrics
from bot.serve.shutdown import Shutdown
from bot.settings import Settings

log = logging.getLogger("whyfailed.web")

SLACK_PATH = "/slack/events"
READ_TIMEOUT = 10  # seconds a client may take to send its request: a stalled one cannot hold a thread
_RETRY_REASONS = {"http_timeout", "too_many_requests", "http_error", "unknown_error", "ssl_error", "connection_failed"}
_REPLY_METHODS = {
    "chat.postMessage": "chat.postMessage",
    "chat.postEphemeral": "chat.postEphemeral",
    "files.completeUploadExternal": "files.upload",
}


class MeteredWebClient(WebClient):
    """Counts the Web API calls that put an answer in front of someone (after Slack said ok)."""

    def api_call(self, api_method: str, **kwargs):
        response = super().api_call(api_method, **kwargs)
        if api_method in _REPLY_METHODS:
            metrics.REPLIES.labels("slack", _REPLY_METHODS[api_method]).inc()
        return response


def count_replies(app) -> None:
    """bolt gives each request a WebClient of its own (plain WebClient): swap in a counting one."""

    def metered_client(context, next):
        plain = context.client
        context["client"] = MeteredWebClient(
            token=plain.token,
            base_url=plain.base_url,
            timeout=plain.timeout,
            ssl=plain.ssl,
            proxy=plain.proxy,
            headers=plain.headers,
            team_id=plain.default_params.get("team_id"),
            logger=plain.logger,
            retry_handlers=plain.retry_handlers,
        )
        next()

    app.middleware(metered_client)


def request_kind(body: bytes) -> str:
    """What Slack sent, from the body's shape: JSON for events, a form with `payload=` for
    interactivity, a form with `command=` for slash commands."""
    if body.lstrip()[:1] == b"{":
        return "event"
    if body.startswith(b"payload="):
        return "interactive"
    if body.startswith(b"command=") or b"&command=" in body:
        return "command"
    return "other"


def metered(application, stopping: threading.Event, metrics_token: str | None):
    """/metrics and the counting around the Slack app; /healthz says 503 once stopping, so a
    load balancer sends new requests elsewhere."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO") or ""
        if path == "/metrics":
            return _metrics(environ, start_response, metrics_token)
        if path == "/healthz" and stopping.is_set():
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"stopping\n"]
        started, kind = time.perf_counter(), "other"
        length = (environ.get("CONTENT_LENGTH") or "0").strip()
        if not length.isdigit():  # the app below would fail on it with a 500
            metrics.HTTP_REQUESTS.labels("other", kind, "400").inc()
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"bad Content-Length\n"]
        if path == SLACK_PATH and environ.get("REQUEST_METHOD") == "POST":
            if 0 < int(length) <= MAX_BODY:  # larger bodies are refused unread by the app below
                body = environ["wsgi.input"].read(int(length))
                environ["wsgi.input"] = io.BytesIO(body)
                kind = request_kind(body)
            if environ.get("HTTP_X_SLACK_RETRY_NUM"):
                reason = environ.get("HTTP_X_SLACK_RETRY_REASON") or "unknown"
                # Slack's reasons are a handful of words; anything else is one label, not many
                metrics.SLACK_RETRIES.labels(reason if reason in _RETRY_REASONS else "other").inc()
        status_seen = []

        def counting_start_response(status, headers, exc_info=None):
            status_seen.append(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        result = application(environ, counting_start_response)
        route = path if path in (SLACK_PATH, "/healthz") else "other"
        metrics.HTTP_REQUESTS.labels(route, kind, status_seen[0] if status_seen else "none").inc()
        if route == SLACK_PATH:
            metrics.ACK_SECONDS.labels(kind).observe(time.perf_counter() - started)
        return result

    return app


def _metrics(environ, start_response, token: str | None):
    if token:
        given = environ.get("HTTP_AUTHORIZATION") or ""
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"unauthorized\n"]
    body, content_type = metrics.exposition()
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    # request threads are joined on server_close: a request being answered at SIGTERM finishes
    daemon_threads = False
    block_on_close = True
    # socketserver's default listen backlog is 5: a burst of Slack requests (a busy channel, or
    # Slack's retries all at once) would see connections refused before a thread could take them
    request_queue_size = 1024


class _Handler(WSGIRequestHandler):
    timeout = READ_TIMEOUT

    def log_message(self, format, *args):  # access lines at debug: the platform's router logs them
        log.debug("http: " + format, *args)


class Pools:
    """bolt's listener pool, where listeners only ack (so it is never busy for long), and the
    work pool, where diagnoses run, WHYFAILED_LISTENER_THREADS at a time."""

    ACK_THREADS = 32

    def __init__(self, settings: Settings):
        self.ack = ThreadPoolExecutor(max_workers=self.ACK_THREADS, thread_name_prefix="slack-ack")
        self.work = ThreadPoolExecutor(max_workers=settings.listener_threads, thread_name_prefix="slack-work")

    def drain(self) -> None:
        self.ack.shutdown(wait=True)  # acks hand work over: the work pool is complete after this
        self.work.shutdown(wait=True)


def build(slack: SlackSettings, settings: Settings, pools: Pools, stopping: threading.Event):
    """The WSGI application of the web process (also what a test or gunicorn would serve)."""
    from bot.adapters.slack import create_app, serialised_audit
    from bot.serve.metered import MeteredConversation

    client = MeteredWebClient(token=slack.bot_token, base_url=slack.api_url)
    conversation = MeteredConversation(settings, audit=serialised_audit(settings.store_target))
    app = create_app(
        settings, client, slack=slack, conversation=conversation, listener_executor=pools.ack, work_executor=pools.work
    )
    count_replies(app)
    return metered(wsgi_app(app, SLACK_PATH), stopping, settings.metrics_token)


def run_web(slack: SlackSettings, settings: Settings, host: str, shutdown: Shutdown) -> int:
    """Serve until SIGTERM, then stop cleanly; returns the exit status."""
    pools = Pools(settings)
    application = build(slack, settings, pools, shutdown.requested)
    server = make_server(host, slack.port, application, server_class=_Server, handler_class=_Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http")
    thread.start()
    event(log, "listening", process="web", port=server.server_port, routes=f"POST {SLACK_PATH}, /healthz, /metrics")
    shutdown.wait()
    server.shutdown()  # the accept loop ends
    thread.join()
    # closes the listening socket, then joins the request threads: no new requests, current ones finish
    requests_done = shutdown.join(server.server_close, "HTTP requests in flight")
    event(log, "stopped listening", process="web")
    answers_done = shutdown.join(pools.drain, "Slack answers in flight")
    return shutdown.finished(requests_done and answers_done)
