"""Slack load: the real `web` process (HTTP mode, a subprocess) against the local Slack Web API,
hit by N signed requests at the same moment (pasted logs, /whyfailed ADDRESS, button clicks,
and Slack's retries of events in the batch). Reports numbers; asserts nothing.

- answered: HTTP 200, and within Slack's 3 s
- ack latency p50 / p95 / max
- seconds until every reply had reached the Web API
- duplicates: replies per event id (a retry must produce none)

    python benchmarks/bench_slack_load.py [--requests 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bot.ingest import ingest_paths  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.serve_process import start_web  # noqa: E402
from tests.slack_fakes import FakeSlackAPI, SlackSender  # noqa: E402
from tests.slack_load import build_requests, count_replies, fire  # noqa: E402

LOG = HERE.parent / "tests" / "fixtures" / "postfix" / "deferred-then-bounced.log"
BOT_TOKEN = "xoxb-1000000001-2000000002-benchbenchbenchbench"
SECRET = "8f742231b10e8888abcd99edabcd00d1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="WHYFAILED_LISTENER_THREADS for the web process.")
    parser.add_argument("--json", action="store_true", help="Print the numbers as one JSON object.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="whyfailed-load-"))
    db = work / "w.db"
    ingest_paths(Store(db), [str(LOG)])
    api = FakeSlackAPI(BOT_TOKEN)
    threads = {"WHYFAILED_LISTENER_THREADS": str(args.threads)} if args.threads else {}
    process, port = start_web(work, BOT_TOKEN, SECRET, api.api_url, WHYFAILED_DB=str(db), **threads)
    try:
        sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SECRET, api)
        result = fire(build_requests(sender, api, LOG.read_text(), args.requests), api)
        process.terminate()  # drains what is in flight: a late duplicate would still be counted
        exit_code = process.wait()
        final = count_replies(api)
    finally:
        process.kill()
        api.close()
    numbers = {
        "requests": result.sent,
        "mix": dict(result.by_kind),
        "cores": os.cpu_count(),
        "http_200": result.statuses.get(200, 0),
        "other_statuses": {str(k): v for k, v in result.statuses.items() if k != 200},
        "acked_after_3s": result.late,
        "ack_p50_ms": round(result.percentile(0.50) * 1000, 1),
        "ack_p95_ms": round(result.percentile(0.95) * 1000, 1),
        "ack_max_ms": round(max(result.latencies) * 1000, 1),
        "seconds_to_all_replies": round(result.seconds_to_all_replies, 2) if result.seconds_to_all_replies else None,
        "replies_expected": len(result.expected),
        "replies_missing": len(result.expected - set(final)),
        "duplicate_replies": sum(n - 1 for n in final.values() if n > 1),
        "unexpected_replies": len(set(final) - result.expected),
        "exit_code_after_sigterm": exit_code,
    }
    if args.json:
        print(json.dumps(numbers, indent=2))
    else:
        for name, value in numbers.items():
            print(f"{name:<26} {value}")
    ok = numbers["http_200"] == result.sent and not numbers["replies_missing"] and not numbers["duplicate_replies"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
