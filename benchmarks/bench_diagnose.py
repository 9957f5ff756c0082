"""Speed of the core, reported as numbers (never asserted in tests).

- parse throughput: lines/second for a generated Postfix log (in-process)
- latency of diagnosing a 2,000-line paste (in-process, median and p95 over runs)
- cold `whyfailed diagnose` of a 20-line paste (a new process each time)

    python benchmarks/bench_diagnose.py [--lines 200000] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_postfix_log import generate  # noqa: E402

from bot.parse import parse_text  # noqa: E402
from bot.report import diagnose_text  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="size of the generated log for throughput")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    text = "\n".join(generate(args.lines))
    parse_text("\n".join(generate(100)))  # warm the parsers, as a running bot would be
    started = time.perf_counter()
    result = parse_text(text)
    elapsed = time.perf_counter() - started
    print(
        f"parse: {args.lines} Postfix lines in {elapsed:.2f} s = {args.lines / elapsed:,.0f} lines/s "
        f"({len(result.unparsed)} unparsed)"
    )

    paste = "\n".join(generate(2000, seed=11))
    diagnose_text(paste)
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        report = diagnose_text(paste)
        timings.append((time.perf_counter() - started) * 1000)
    print(
        f"diagnose 2,000-line paste: median {statistics.median(timings):.0f} ms, "
        f"p95 {percentile(timings, 0.95):.0f} ms, {len(report.deliveries)} deliveries"
    )

    small = "\n".join(generate(20, seed=3)) + "\n"
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as handle:
        handle.write(small)
    subprocess.run([sys.executable, "-m", "bot", "diagnose", handle.name], capture_output=True, check=True)
    cold = []
    for _ in range(max(5, args.runs // 2)):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bot", "diagnose", handle.name], capture_output=True, check=True)
        cold.append((time.perf_counter() - started) * 1000)
    print(
        f"cold `whyfailed diagnose` of a 20-line paste: median {statistics.median(cold):.0f} ms, "
        f"p95 {percentile(cold, 0.95):.0f} ms"
    )


if __name__ == "__main__":
    main()
