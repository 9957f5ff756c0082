"""Running the Slack bot as a process: HTTP mode (a web process on $PORT) or Socket Mode (a worker).

HTTP mode is a WSGI callable on the standard library's threaded wsgiref server: bolt's own
`app.start()` is a development server with no room for /healthz, and a WSGI callable also runs
unchanged under gunicorn when one process is not enough. No new dependency either way.
"""

from __future__ import annotations

import logging
import threading
from urllib.error import URLError

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from bot.adapters.slack import create_app
from bot.adapters.slack_settings import SlackSettings
from bot.settings import Settings

log = logging.getLogger("whyfailed.slack")


MAX_BODY = 1_000_000  # Slack's payloads are a few kB; refuse a body that would only cost memory


class SlackSetupError(Exception):
    """The bot cannot start; the message says what to fix."""


def wsgi_app(app: App, path: str = "/slack/events"):
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    handler = SlackRequestHandler(app, path)

    def application(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if int(environ.get("CONTENT_LENGTH") or 0) > MAX_BODY:
            start_response("413 Payload Too Large", [("Content-Type", "text/plain")])
            return [b"too large\n"]
        return handler(environ, start_response)

    return application


def make_http_server(app: App, host: str, port: int):
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = 1024  # the default backlog of 5 refuses a burst of requests

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):  # access lines to debug: the platform's router logs them
            log.debug("http: " + format, *args)

    return make_server(host, port, wsgi_app(app), server_class=Server, handler_class=Quiet)


def socket_mode_handler(app: App, slack: SlackSettings):
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    return SocketModeHandler(app, slack.app_token)


def serve(slack: SlackSettings, settings: Settings, host: str = "0.0.0.0") -> None:
    """Run until stopped: a web process on slack.port, or a Socket Mode worker."""
    import signal

    from slack_bolt.error import BoltError

    if problems := slack.problems():
        raise SlackSetupError("\n".join(problems))
    try:
        app = create_app(settings, slack=slack)
        handler = socket_mode_handler(app, slack) if slack.mode == "socket" else None
        if handler is not None:
            log.info("connecting to Slack in Socket Mode")
            handler.connect()  # apps.connections.open: a refused app token fails here, clearly
    except BoltError as error:
        raise SlackSetupError(f"Slack refused the bot token: {error}. Check SLACK_BOT_TOKEN.") from None
    except SlackApiError as error:
        raise SlackSetupError(f"Slack refused: {error.response.get('error')}. Check SLACK_APP_TOKEN.") from None
    except URLError as error:
        raise SlackSetupError(
            f"cannot reach Slack at {slack.api_url} ({error.reason}): check network and proxy."
        ) from None
    if handler is not None:
        threading.Event().wait()  # the handler's own threads do the work, reconnecting as needed
        return
    try:
        server = make_http_server(app, host, slack.port)
    except OSError as error:
        raise SlackSetupError(f"cannot listen on {host}:{slack.port} ({error.strerror or error}).") from None
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("listening on %s:%s (POST /slack/events, GET /healthz)", host, slack.port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
