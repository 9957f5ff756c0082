"""Issue 4, "Speed", measured in one run, side by side (numbers only, never asserted):

1. ingest throughput vs pflogsumm on the same generated Postfix log (goal: ratio <= 1.0)
2. `why` on an index of 1 million deliveries: p50/p95/p99 for existing addresses, domains and
   absent addresses (goal: p95 < 50 ms)
3. `whyfailed why --log` (no index) vs the shell way, `grep ADDRESS` then `grep` each queue id,
   both as whole commands (goal: ratio <= 2.0)
4. peak memory of ingest, summed over the process and its pool workers (goal: flat, < 200 MB;
   run with --big-mb 1000 for the 1 GB log)

    python benchmarks/bench_issue4.py [--lines 1000000] [--log FILE] [--repeat 3] [--json out.json]
        [--skip pflogsumm,ingest,why,scan,big] [--big-mb 1000 [--big-log FILE]]

Each timing is the median of --repeat runs: the machine is shared, so say what else ran.
Commands run with bytecode caching on (PYTHONDONTWRITEBYTECODE is dropped), as installed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from generate_postfix_log import generate_mix  # noqa: E402

from bot.store_rows import DELIVERY_COLUMNS, INSERT_ATTEMPT  # noqa: E402

WHYFAILED = [sys.executable, "-m", "bot"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _tree_memory_kb(root: int) -> tuple[int, int]:
    """(RSS, PSS) in kB of a process and all its descendants (pool workers included), from
    /proc. Forked workers share the parent's pages, which a sum of RSS counts once per
    process; PSS splits shared pages between their users, so its sum is the real footprint."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    rss = pss = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return rss, pss


def run_sampled(command: list[str], **kwargs) -> tuple[float, dict, subprocess.CompletedProcess]:
    """(seconds, peak summed RSS and PSS in MB, result) of one command, sampling its process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    peak = [0, 0]

    def sample() -> None:
        while process.poll() is None:
            rss, pss = _tree_memory_kb(process.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    result = subprocess.CompletedProcess(command, process.returncode, out, err)
    return seconds, {"rss": peak[0] // 1024, "pss": peak[1] // 1024}, result


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, **kwargs)
    return time.perf_counter() - started, done


def write_log(path: Path, lines: int, seed: int = 7) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for line in generate_mix(lines, seed):
            handle.write(line + "\n")


def bench_side_by_side(
    log: Path, lines: int, repeat: int, work: Path | None, extra: list[str], pflogsumm: bool = True, ingest: bool = True
) -> dict:
    """pflogsumm and ingest in turns, one run of each per round: the machine's speed drifts
    over minutes (pflogsumm alone has taken 14.3 to 18.0 s in one series of three), and a
    drift then weighs on both sides alike. Each side's median, and each round's ratio."""
    if pflogsumm and not shutil.which("pflogsumm"):
        pflogsumm, result = False, {"pflogsumm": {"error": "pflogsumm not installed (apt-get install pflogsumm)"}}
    else:
        result = {}
    ours, theirs, peaks = [], [], []
    for n in range(repeat):
        if pflogsumm:
            theirs.append(timed(["pflogsumm", str(log)])[0])
        if ingest:
            db = work / f"ingest-{n}.db"
            seconds, peak, done = run_sampled([*WHYFAILED, "ingest", str(log), "--db", str(db), *extra], cwd=REPO)
            if done.returncode:  # the error is the result, not the runs before it; pflogsumm goes on
                result["ingest"] = {"error": done.stderr.decode()[-2000:]}
                ingest = False
                ours.clear()
                continue
            ours.append(seconds)
            peaks.append(peak)
            if n < repeat - 1:
                db.unlink()
    if theirs:
        median = statistics.median(theirs)
        result["pflogsumm"] = {"seconds": median, "runs": theirs, "lines_per_s": lines / median}
    if ours:
        median = statistics.median(ours)
        result["ingest"] = {
            "seconds": median,
            "runs": ours,
            "lines_per_s": lines / median,
            "peak_rss_mb": max(p["rss"] for p in peaks),
            "peak_pss_mb": max(p["pss"] for p in peaks),
        }
    if theirs and ours:
        result["round_ratios"] = [a / b for a, b in zip(ours, theirs, strict=True)]
    return result


def build_index(db: Path, deliveries: int, seed: int = 3) -> list[str]:
    """A 1M-delivery index written straight through SQL in the store's schema (ingesting that
    many deliveries would take a while): one to three attempts per delivery, a realistic spread
    of recipients, domains and statuses. Returns the recipients written."""
    from bot.store import Store

    Store(db)  # the schema and its indexes (rows in the order of the store's own columns)
    rng = random.Random(seed)
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    statuses = ["delivered"] * 80 + ["deferred"] * 6 + ["bounced"] * 10 + ["rejected"] * 4
    recipients = []
    batch_d, batch_a = [], []
    connection.execute("BEGIN")
    for n in range(deliveries):
        domain = f"dest{rng.randint(1, 20000)}.example"
        rcpt = f"u{rng.randint(1, 400000)}@{domain}"
        sender = f"user{rng.randint(1, 5000)}@example.com"
        qid = f"{n:010X}"
        key = f"mail.log|mx1|{qid}|{rcpt}"
        status = rng.choice(statuses)
        day, second = 1 + n * 30 // 86400 % 28, n * 30 % 86400
        stamp = f"2026-11-{day:02d} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        row = {
            "id": key, "source": "mail.log", "format": "postfix", "host": "mx1", "queue_id": qid,
            "message_key": key.rsplit("|", 1)[0], "recipient": rcpt, "recipient_lc": rcpt,
            "recipient_domain": domain, "sender": sender, "sender_lc": sender, "message_id": f"{qid}@example.com",
            "direction": "out", "status": status, "first_seen": stamp, "last_seen": stamp,
        }  # fmt: skip
        batch_d.append(tuple(row[column] for column in DELIVERY_COLUMNS))
        for line in range(1 + (status == "deferred") + (rng.random() < 0.1)):
            text = "250 2.0.0 Ok" if status == "delivered" else "550 5.1.1 <x>: Recipient address rejected"
            batch_a.append(
                (key, n * 3 + line, stamp, status, "rcpt", 250 if status == "delivered" else 550, "5.1.1",
                 text, f"mx.{domain}", "198.51.100.7", json.dumps([[n * 3 + line, text]]))
            )  # fmt: skip
        recipients.append(rcpt)
        if len(batch_d) >= 50000:
            _flush(connection, batch_d, batch_a)
    _flush(connection, batch_d, batch_a)
    connection.execute("COMMIT")
    connection.close()
    return recipients


def _flush(connection, deliveries: list, attempts: list) -> None:
    connection.executemany(
        f"insert or replace into deliveries ({', '.join(DELIVERY_COLUMNS)}) "
        f"values ({','.join('?' * len(DELIVERY_COLUMNS))})",
        deliveries,
    )
    connection.executemany(INSERT_ATTEMPT, attempts)
    deliveries.clear()
    attempts.clear()


def bench_why(db: Path, recipients: list[str], queries: int) -> dict:
    """In-process latency of why_from_store (find + diagnose), per kind of query."""
    from bot.store import Store
    from bot.why import why_from_store

    store = Store(db)
    rng = random.Random(11)
    kinds = {
        "address": [a.lower() for a in rng.sample(recipients, queries)],
        "domain": ["@" + a.split("@")[1] for a in rng.sample(recipients, queries)],
        "absent": [f"nobody{n}@absent{n}.example" for n in range(queries)],
    }
    why_from_store(store, kinds["address"][0], None)  # warm: knowledge loaded once per process
    result = {}
    for kind, addresses in kinds.items():
        latencies = []
        for address in addresses:
            started = time.perf_counter()
            why_from_store(store, address, None)
            latencies.append((time.perf_counter() - started) * 1000)
        result[kind] = {
            "p50_ms": statistics.median(latencies),
            "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99),
        }
    every = [v for k in result.values() for v in (k["p95_ms"],)]
    result["p95_ms_worst_kind"] = max(every)
    # And as a whole command, start-up included, for a few addresses.
    cli = [timed([*WHYFAILED, "why", a, "--db", str(db)], cwd=REPO)[0] * 1000 for a in kinds["address"][:5]]
    result["cli_median_ms"] = statistics.median(cli)
    return result


def shell_way(log: Path, address: str) -> float:
    """What an admin types: grep the address, then grep each queue id found."""
    started = time.perf_counter()
    hits = subprocess.run(["grep", "-iF", address, str(log)], capture_output=True, text=True).stdout
    ids = sorted({m.group(1) for m in re.finditer(r"\]: ([0-9A-F]{6,}|[0-9A-Za-z]{10,20}):", hits)})
    for queue_id in ids:
        subprocess.run(["grep", "-F", f"{queue_id}:", str(log)], capture_output=True)
    return time.perf_counter() - started


def bench_scan(log: Path, repeat: int) -> dict:
    """why --log vs the shell way, on an address with one message and one with about ten."""
    counts: dict[str, int] = {}
    with open(log, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            at = line.find(" to=<")
            if at > 0:
                address = line[at + 5 : line.find(">", at)]
                counts[address] = counts.get(address, 0) + 1
    ranked = sorted(counts, key=counts.get)
    # one message, and about ten (the shell way greps the whole file once per queue id, so an
    # address with a thousand messages takes it many minutes)
    picks = {"rare": ranked[len(ranked) // 4], "several": min(ranked, key=lambda a: abs(counts[a] - 10))}
    result = {}
    for label, address in picks.items():
        command = [*WHYFAILED, "why", address, "--log", str(log), "--format", "json"]
        timed(command, cwd=REPO)  # warm: the file in the page cache for both sides
        ours = [timed(command, cwd=REPO)[0] for _ in range(repeat)]
        shell = [shell_way(log, address) for _ in range(repeat)]
        why_s, shell_s = statistics.median(ours), statistics.median(shell)
        result[label] = {
            "address": address,
            "messages": counts[address],
            "why_log_s": why_s,
            "shell_s": shell_s,
            "ratio": why_s / shell_s,
        }
    return result


def bench_big(work: Path, megabytes: int, given: Path | None = None) -> dict:
    """Peak memory of ingesting a big log (summed over the process tree), and its speed.
    `given`: a log written before (generating 1 GB takes minutes), used as it is."""
    log = given or work / "big.log"
    lines = 0
    if given is None:
        with open(log, "w", encoding="utf-8") as handle:
            for line in generate_mix(10**9, seed=13):
                handle.write(line + "\n")
                lines += 1
                if lines % 10000 == 0 and handle.tell() >= megabytes * 1_000_000:
                    break
    else:
        with open(log, "rb") as handle:
            lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    seconds, peak, done = run_sampled([*WHYFAILED, "ingest", str(log), "--db", str(work / "big.db")], cwd=REPO)
    size = log.stat().st_size
    if given is None:
        log.unlink()
    (work / "big.db").unlink(missing_ok=True)
    if done.returncode:
        return {"error": done.stderr.decode()[-2000:]}
    return {
        "mb": size / 1e6,
        "lines": lines,
        "seconds": seconds,
        "lines_per_s": lines / seconds,
        "peak_rss_mb": peak["rss"],
        "peak_pss_mb": peak["pss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--log", type=Path, help="use this log instead of generating one")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=1_000_000, help="size of the index `why` is timed on")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--big-mb", type=int, default=0, help="also ingest a log of this many MB for peak memory")
    parser.add_argument("--big-log", type=Path, help="for --big-mb: ingest this log instead of writing one")
    parser.add_argument("--skip", default="", help="comma-separated: pflogsumm,ingest,why,scan")
    parser.add_argument("--ingest-args", default="", help="extra arguments for whyfailed ingest")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    # An installed whyfailed has its bytecode compiled; a checkout run with this set would
    # compile every module at every start and time that instead.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="whyfailed-bench-"))
    results: dict = {"machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()}}
    try:
        log = args.log
        if log is None:
            log = work / "mail.log"
            write_log(log, args.lines)
        lines = sum(1 for _ in open(log, "rb"))
        results["log"] = {"path": str(log), "lines": lines, "mb": log.stat().st_size / 1e6}
        print(f"log: {lines:,} lines, {log.stat().st_size / 1e6:.0f} MB")
        if "pflogsumm" not in skip or "ingest" not in skip:
            results.update(
                bench_side_by_side(
                    log,
                    lines,
                    args.repeat,
                    work,
                    args.ingest_args.split(),
                    pflogsumm="pflogsumm" not in skip,
                    ingest="ingest" not in skip,
                )
            )
            for side in ("pflogsumm", "ingest"):
                if side in results:
                    print(f"{side}:", _short(results[side]))
            if "round_ratios" in results:
                print("ingest / pflogsumm by round:", ", ".join(f"{r:.2f}" for r in results["round_ratios"]))
        if "why" not in skip:
            db = work / "million.db"
            started = time.perf_counter()
            recipients = build_index(db, args.deliveries)
            print(f"built an index of {args.deliveries:,} deliveries in {time.perf_counter() - started:.0f} s")
            results["why"] = bench_why(db, recipients, args.queries)
            print("why:", json.dumps(results["why"], default=_round))
        if "scan" not in skip:
            results["scan"] = bench_scan(log, args.repeat)
            print("why --log:", json.dumps(results["scan"], default=_round))
        if args.big_mb:
            results["big"] = bench_big(work, args.big_mb, args.big_log)
            print("big:", _short(results["big"]))
        results["machine"]["load_after"] = os.getloadavg()
        print_table(results)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _round(value):
    return round(value, 3) if isinstance(value, float) else str(value)


def _short(item: dict) -> str:
    return ", ".join(f"{k}={_round(v) if isinstance(v, float) else v}" for k, v in item.items() if k != "runs")


def print_table(results: dict) -> None:
    rows = []
    pf, ing = results.get("pflogsumm", {}), results.get("ingest", {})
    if "seconds" in pf and "seconds" in ing:
        ratio = ing["seconds"] / pf["seconds"]
        rows.append(
            (
                "ingest / pflogsumm time",
                f"{ing['seconds']:.1f} s / {pf['seconds']:.1f} s "
                f"({ing['lines_per_s']:,.0f} vs {pf['lines_per_s']:,.0f} lines/s; by round "
                + ", ".join(f"{r:.2f}" for r in results.get("round_ratios", []))
                + ")",
                f"{ratio:.2f}",
                "<= 1.0",
                "met" if ratio <= 1.0 else "not met",
            )
        )
    if "why" in results:
        why = results["why"]
        detail = ", ".join(f"{k} p50/p95/p99 {v['p50_ms']:.1f}/{v['p95_ms']:.1f}/{v['p99_ms']:.1f} ms"
                           for k, v in why.items() if isinstance(v, dict))  # fmt: skip
        worst = why["p95_ms_worst_kind"]
        rows.append(
            ("why p95 (1M deliveries)", detail, f"{worst:.1f} ms", "< 50 ms", "met" if worst < 50 else "not met")
        )
    for label, scan in results.get("scan", {}).items():
        rows.append(
            (
                f"why --log / shell ({label}, {scan['messages']} msgs)",
                f"{scan['why_log_s']:.2f} s / {scan['shell_s']:.2f} s",
                f"{scan['ratio']:.2f}",
                "<= 2.0",
                "met" if scan["ratio"] <= 2.0 else "not met",
            )
        )
    for key, label in (("ingest", "ingest peak memory (tree)"), ("big", "ingest peak memory, big log")):
        if "peak_rss_mb" in results.get(key, {}):
            item = results[key]
            size = f" on {item['mb']:.0f} MB at {item['lines_per_s']:,.0f} lines/s" if key == "big" else ""
            memory = f"RSS {item['peak_rss_mb']} MB, PSS {item['peak_pss_mb']} MB"
            rows.append((label, f"{memory}{size}", f"{item['peak_pss_mb']} MB", "< 200 MB",
                         "met" if item["peak_pss_mb"] < 200 else "not met"))  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)] if rows else []
    print()
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    machine = results["machine"]
    print(f"\ncores {machine['cores']}, load before {machine['load_before']}, after {machine.get('load_after')}")


if __name__ == "__main__":
    main()
