"""Runs the benchmarks and writes their figures into docs/performance.md and a plot.

Runs, each as a child process printing its JSON line: bench/stream.py, bench/latency.py
--samples --phases, bench/many_flows.py --timeline (both with their Celery contender when
Celery is installed), bench/many_jobs.py, and, where their scripts exist, bench/cache.py,
bench/large.py, bench/async_handler.py, bench/schedulers.py and bench/broker_cluster.py;
and times `dagyo run examples/hello.json`. Writes the table of this run between the
``<!-- report: begin -->`` and ``<!-- report: end -->`` lines of docs/performance.md, with
the machine, the date and each command, and the plot beside it (docs/performance.png):
items/s by contender, the CDF of submit -> first export, flows/s over time. Needs
matplotlib and, for the Ray and Celery contenders, Ray and Celery (``pip install -e
'.[bench]'``); the broker at DAGYO_QUEUE.

Usage:
    python bench/report.py
    python bench/report.py --quick --doc /tmp/performance.md --plot /tmp/performance.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- report: begin -->", "<!-- report: end -->"

# name -> (its command, the smaller one of --quick)
BENCHES = {
    "stream": (
        ["bench/stream.py", "--items", "300000"],
        ["bench/stream.py", "--items", "100000", "--repeat", "1"],
    ),
    "latency": (
        ["bench/latency.py", "--samples", "--phases"],
        ["bench/latency.py", "--samples", "--phases", "--flows", "30"],
    ),
    "many_flows": (
        ["bench/many_flows.py", "--flows", "1000", "--timeline"],
        ["bench/many_flows.py", "--flows", "100", "--timeline"],
    ),
    "many_jobs": (
        ["bench/many_jobs.py", "--jobs", "1000", "--delay-ms", "15000"],
        ["bench/many_jobs.py", "--jobs", "50", "--delay-ms", "2000"],
    ),
}
# Run only where the script exists: name -> (its command, the smaller one of --quick).
OPTIONAL = {
    "cache": (
        ["bench/cache.py", "--items", "300000", "--repeat", "50"],
        ["bench/cache.py", "--items", "30000", "--repeat", "10", "--rounds", "1"],
    ),
    "large": (
        ["bench/large.py", "--items", "10", "--mb", "100"],
        ["bench/large.py", "--items", "2", "--mb", "20", "--stores", "file"],
    ),
    "async_handler": (
        ["bench/async_handler.py", "--items", "5000"],
        ["bench/async_handler.py", "--items", "500", "--sync-items", "20", "--no-embedded"],
    ),
    "schedulers": (["bench/schedulers.py"], ["bench/schedulers.py"]),
    "broker_cluster": (
        ["bench/broker_cluster.py", "--flows", "300", "--items", "100000", "--rounds", "2"],
        ["bench/broker_cluster.py", "--flows", "50", "--items", "20000", "--rounds", "1"],
    ),
}
BENCHES.update({name: both for name, both in OPTIONAL.items() if (ROOT / both[0][0]).is_file()})
RUN_COMMAND = ["-m", "scheduler.cli", "run", "examples/hello.json"]


def bench(script: list[str]) -> dict[str, Any]:
    """Run one benchmark; return its JSON line."""
    done = subprocess.run(
        [sys.executable, *script], cwd=ROOT, capture_output=True, text=True, timeout=3600
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{' '.join(script)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


def time_run(runs: int) -> dict[str, Any]:
    """Time the whole `dagyo run examples/hello.json`, --runs times."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, *RUN_COMMAND], cwd=ROOT, capture_output=True, check=True, timeout=60
        )
        seconds.append(time.perf_counter() - started)
    return {"best_s": round(min(seconds), 3), "median_s": round(statistics.median(seconds), 3)}


def machine() -> str:
    """One line: cores, CPU, memory, Python and the libraries that bound the figures."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo.read_text())[1])  # type: ignore[index]
        memory = f", {kb / 2**20:.0f} GiB"
    versions = []
    for package in ("pika", "protobuf", "ray"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    try:
        broker = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        versions.append(f"RabbitMQ {broker}" if broker else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}, "
        + ", ".join(v for v in versions if v)
    )


def command(script: list[str]) -> str:
    return "`python " + shlex.join(script) + "`"


def table(results: dict[str, Any], commands: dict[str, list[str]]) -> list[str]:
    """The rows of this run's table, as markdown lines."""
    rows = ["| what | command | figure |", "|---|---|---|"]
    stream = results.get("stream")
    if stream:
        where = command(commands["stream"])
        for name, prefix in (
            ("cluster", ""),
            ("embedded runner", "embedded_"),
            ("hand-written pika", "handwritten_"),
            ("Ray", "ray_"),
            ("cluster, its middle node on Node.js", "node_"),
        ):
            if f"{prefix}items_per_s" in stream:
                rows.append(
                    f"| {name}, source -> {'upper' if prefix == 'node_' else 'greet'} -> count "
                    f"of {stream['items']:,} items | {where} "
                    f"| {stream[f'{prefix}items_per_s']:,} items/s (median "
                    f"{stream[f'{prefix}median_items_per_s']:,}) |"
                )
        ratios = ", ".join(
            f"{key} {stream[key]}"
            for key in ("ratio", "embedded_ratio", "ray_ratio", "embedded_ray_ratio", "node_ratio")
            if key in stream
        )
        rows.append(
            f"| ratios (speed over the baseline's; node_ratio: over the Python middle node's) "
            f"| (same) | {ratios} |"
        )
    latency = results.get("latency")
    if latency:
        first, ended = latency["first_export_ms"], latency["finished_ms"]
        rows.append(
            f"| hello flow, submit → first export ({latency['flows']} flows, warm cluster) "
            f"| {command(commands['latency'])} | p50 {first['p50']} ms, p99 {first['p99']} ms |"
        )
        rows.append(
            f"| hello flow, submit → finished | (same) | p50 {ended['p50']} ms, "
            f"p99 {ended['p99']} ms |"
        )
        celery = latency.get("celery_sent_done_ms")
        if celery:
            rows.append(
                f"| the same three steps as a Celery chain, sent → done (one after each flow) "
                f"| (same) | p50 {celery['p50']} ms, p99 {celery['p99']} ms: dagyo's p50 "
                f"{latency['celery_ratio']}× Celery's, p99 {latency['celery_p99_ratio']}×; "
                f"load average {latency['load'][0]} → {latency['load'][-1]} |"
            )
        phases = latency.get("phases_ms")
        if phases:
            shown = ", ".join(
                f"{name} {ms}" for name, ms in phases.items() if isinstance(ms, (int, float))
            )
            rows.append(f"| where a submit goes, ms (p50) | (same) | {shown} |")
    flows = results.get("many_flows")
    if flows:
        rows.append(
            f"| {flows['flows']} concurrent hello flows | {command(commands['many_flows'])} "
            f"| {flows['succeeded']} succeeded in {flows['seconds']} s "
            f"({flows['flows_per_s']} flows/s), {flows['queues_left']} queues left, "
            f"scheduler RSS {flows['scheduler_rss_mb']} MB |"
        )
        cpu = flows.get("cpu_ms_per_flow")
        if cpu:
            parts = ", ".join(f"{name} {ms}" for name, ms in cpu.items() if name != "total")
            rows.append(
                f"| CPU per hello flow, while they ran | (same) | {cpu['total']} ms ({parts}), "
                f"{flows['cores_busy']} cores busy |"
            )
        if "celery_chains_per_s" in flows:
            theirs = flows["celery_cpu_ms_per_chain"]
            parts = ", ".join(f"{name} {ms}" for name, ms in theirs.items() if name != "total")
            rows.append(
                f"| the same three steps as Celery chains for as long, prefork worker of "
                f"concurrency = cores | (same) | {flows['celery_chains']} in "
                f"{flows['celery_seconds']} s ({flows['celery_chains_per_s']} chains/s): dagyo "
                f"{flows['celery_ratio']}× Celery; CPU per chain {theirs['total']} ms ({parts}), "
                f"dagyo's per flow {flows['cpu_ratio']}× it; load average "
                f"{flows['load'][0]} → {flows['load'][-1]} |"
            )
    jobs = results.get("many_jobs")
    if jobs:
        rows.append(
            f"| one executor, {jobs['jobs']} concurrent `slow` jobs "
            f"| {command(commands['many_jobs'])} | {jobs['succeeded']} succeeded, "
            f"{jobs['peak_jobs']} at once, {jobs['idle_rss_mb']} → {jobs['busy_rss_mb']} MB: "
            f"{jobs['rss_per_job_kb']} KB per job |"
        )
    rows += extra_rows(results, commands)
    run = results.get("run")
    if run:
        rows.append(
            f"| `dagyo run examples/hello.json`, whole command | "
            f"{command(RUN_COMMAND)} ({run['runs']} runs) | {run['best_s']} s best, "
            f"{run['median_s']} s median |"
        )
    return rows


# name -> (what it measures, the keys of its JSON line shown)
EXTRA_ROWS = {
    "cache": (
        "hello flow fully cached, embedded runner: run → first export; a replayed stream",
        (
            "first_export_cached_p50_ms",
            "first_export_live_p50_ms",
            "replayed_items_per_s",
            "live_items_per_s",
            "replay_ratio",
        ),
    ),  # fmt: skip
    "large": ("large items between two executors, through the object store", ("cp_mb_s",)),
    "async_handler": (
        "a handler awaiting 50 ms per item, 64 in flight, against one at a time",
        ("async_items_per_s", "sync_items_per_s", "speedup", "embedded_async_items_per_s"),
    ),
    "schedulers": ("several schedulers on one state", ()),
    "broker_cluster": (
        "three broker nodes against one, hello flows and a stream",
        ("three_over_one", "three_spread_over_one"),
    ),
}


def extra_rows(results: dict[str, Any], commands: dict[str, list[str]]) -> list[str]:
    """One row per benchmark of OPTIONAL that ran: the keys EXTRA_ROWS names (every plain
    figure of its JSON line where it names none), and each store's MB/s of bench/large.py."""
    rows = []
    for name, (what, keys) in EXTRA_ROWS.items():
        figures = results.get(name)
        if not figures:
            continue
        shown = [f"{key} {figures[key]}" for key in keys if key in figures]
        if not keys:
            shown = [f"{k} {v}" for k, v in figures.items() if isinstance(v, (int, float))]
        for run in figures.get("runs", []) if name == "large" else []:
            shown.append(", ".join(f"{k} {v}" for k, v in run.items() if not isinstance(v, dict)))
        rows.append(f"| {what} | {command(commands[name])} | {'; '.join(shown)} |")
    return rows


def write_doc(doc: Path, lines: list[str]) -> None:
    """Replace what stands between the report markers of ``doc`` (or add them at its end)."""
    text = doc.read_text() if doc.is_file() else ""
    block = "\n".join([BEGIN, *lines, END])
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        text = before + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    doc.write_text(text)


def plot(results: dict[str, Any], path: Path) -> None:
    """Items/s by contender, the latency CDF and flows/s over time, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, cdf, rate) = plt.subplots(1, 3, figsize=(15, 4.2))
    stream = results.get("stream", {})
    names = [
        (label, prefix)
        for label, prefix in (
            ("cluster", ""),
            ("embedded", "embedded_"),
            ("hand-written", "handwritten_"),
            ("Ray", "ray_"),
        )
        if f"{prefix}items_per_s" in stream
    ]
    speed.bar([n for n, _ in names], [stream[f"{p}items_per_s"] / 1000 for _, p in names])
    speed.scatter(
        [n for n, _ in names],
        [stream[f"{p}median_items_per_s"] / 1000 for _, p in names],
        color="black",
        marker="_",
        s=400,
        label="median",
    )
    speed.set_title(f"source -> greet -> count, {stream.get('items', 0):,} items")
    speed.set_ylabel("thousand items/s (best run; median marked)")
    speed.legend()
    samples = sorted(results.get("latency", {}).get("first_export_samples_ms", []))
    if samples:
        cdf.plot(samples, [(i + 1) / len(samples) for i in range(len(samples))])
    cdf.set_title("hello flow: submit -> first export")
    cdf.set_xlabel("ms")
    cdf.set_ylabel("fraction of flows")
    cdf.grid(True, alpha=0.3)
    ended = results.get("many_flows", {}).get("ended_at_s", [])
    if ended:
        per_second = Counter(int(t) for t in ended)
        seconds = list(range(int(max(ended)) + 1))
        rate.plot(seconds, [per_second.get(s, 0) for s in seconds], drawstyle="steps-post")
    rate.set_title(f"{len(ended)} concurrent hello flows")
    rate.set_xlabel("seconds since the first submit")
    rate.set_ylabel("flows ended per second")
    rate.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark small, to try it")
    parser.add_argument(
        "--skip", action="append", default=[], choices=[*BENCHES, "run"], help="leave one out"
    )
    parser.add_argument("--runs", type=int, default=15, help="timed runs of `dagyo run`")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "performance.png")
    args = parser.parse_args()
    commands = {name: both[1 if args.quick else 0] for name, both in BENCHES.items()}
    results: dict[str, Any] = {}
    for name, script in commands.items():
        if name not in args.skip:
            print(f"bench/report.py: {' '.join(script)}", file=sys.stderr, flush=True)
            results[name] = bench(script)
    if "run" not in args.skip:
        results["run"] = {**time_run(args.runs), "runs": args.runs}
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"The last `python bench/report.py{' --quick' if args.quick else ''}`, {date}, on "
        f"{machine()}; the plot: [{args.plot.name}]({args.plot.name}).",
        "",
        *table(results, commands),
    ]
    write_doc(args.doc, lines)
    plot(results, args.plot)
    print(json.dumps({"bench": "report", "doc": str(args.doc), "plot": str(args.plot)}))


if __name__ == "__main__":
    main()
