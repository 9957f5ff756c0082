"""Index speed, side by side with the tools an admin would use (numbers only, never asserted).

- ingest throughput vs pflogsumm on the same generated Postfix log (ratio <= 1.0 is the goal)
- `why` latency (p50/p95) on the indexed store
- `why --log` (no index) vs the shell way: grep ADDRESS, then grep each queue id
- peak memory (max RSS) of the ingest process

    python benchmarks/bench_index.py --lines 1000000 [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from generate_postfix_log import generate  # noqa: E402


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, **kwargs)
    return time.perf_counter() - started, done


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="whyfailed-bench-"))
    log, db = work / "mail.log", work / "index.db"
    with open(log, "w") as handle:
        for line in generate(args.lines):
            handle.write(line + "\n")
    size_mb = log.stat().st_size / 1e6
    print(f"log: {args.lines:,} lines, {size_mb:.0f} MB")

    if shutil.which("pflogsumm"):
        pflog_s, _ = timed(["pflogsumm", str(log)])
        print(f"pflogsumm: {pflog_s:.1f} s ({args.lines / pflog_s:,.0f} lines/s)")
    else:
        pflog_s = None
        print("pflogsumm: not installed (apt-get install pflogsumm)")

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    ingest_s, done = timed([sys.executable, "-m", "bot", "ingest", str(log), "--db", str(db)])
    peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(
        f"whyfailed ingest: {ingest_s:.1f} s ({args.lines / ingest_s:,.0f} lines/s), "
        f"peak RSS of a process {peak_mb:.0f} MB"
        + (f", ratio to pflogsumm {ingest_s / pflog_s:.2f}" if pflog_s else "")
    )
    if done.returncode:
        print(done.stderr.decode()[-2000:])
        return

    connection = sqlite3.connect(db)
    recipients = [r[0] for r in connection.execute("select recipient from deliveries")]
    print(f"indexed deliveries: {len(recipients):,}")
    from bot.store import Store
    from bot.why import why_from_store

    store = Store(db)
    rng = random.Random(1)
    latencies = []
    for address in rng.sample(recipients, min(args.queries, len(recipients))):
        started = time.perf_counter()
        why_from_store(store, address.lower(), None)
        latencies.append((time.perf_counter() - started) * 1000)
    print(
        f"why (index): p50 {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms "
        f"over {len(latencies)} queries"
    )

    address = rng.choice(recipients)
    why_s, _ = timed([sys.executable, "-m", "bot", "why", address, "--log", str(log), "--format", "json"])
    started = time.perf_counter()
    hits = subprocess.run(["grep", "-F", address, str(log)], capture_output=True, text=True).stdout
    ids = sorted({m.group(1) for m in re.finditer(r"\]: ([0-9A-F]{6,}):", hits)})
    for queue_id in ids:
        subprocess.run(["grep", "-F", queue_id, str(log)], capture_output=True)
    shell_s = time.perf_counter() - started
    print(f"why --log (no index): {why_s:.2f} s; shell grep way: {shell_s:.2f} s; ratio {why_s / shell_s:.2f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
