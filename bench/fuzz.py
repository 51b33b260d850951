"""Coverage-guided fuzzing (atheris) of what dagyo decodes from people and from the wire.

Targets:
    flow      Flow JSON text -> parse_flow + check_flow against the sample catalogue
    progdef   progdef.json bytes -> load_progdef (as the loader reads a file)
    frame     a stream frame -> decode_frame and its items as dagyo.types.Text
    job       a job descriptor -> Job.FromString and its plan fields

Anything but a DagyoError (the errors meant for a person) is a finding: its input is
saved under ``--findings`` (default bench/fuzz-findings/) and becomes a regression test.
Prints one JSON line: {"target", "seconds", "executions", "findings": [...]}.

Usage (atheris comes with the ``bench`` extra: ``pip install -e '.[bench]'``):
    python bench/fuzz.py flow --seconds 600
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from executor.core.errors import DagyoError
    from executor.core.frames import decode_frame
    from executor.core.progdef import load_catalogue, load_progdef
    from executor.pb.dagyo.types_pb2 import Text
    from executor.pb.dagyo.v1.job_pb2 import Job
    from scheduler.flow.check import check_flow
    from scheduler.flow.parse import parse_flow

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = load_catalogue(ROOT / "progdefs")
SEEDS = {
    "flow": [path.read_bytes() for path in sorted((ROOT / "examples").glob("*.json"))],
    "progdef": [(ROOT / "progdefs" / name / "progdef.json").read_bytes() for name in CATALOGUE],
}


def fuzz_flow(data: bytes) -> None:
    text = data.decode("utf-8", errors="surrogateescape")
    check_flow(parse_flow(text, source="fuzz.json"), CATALOGUE, source="fuzz.json")


_PROGDEF_DIR = Path(tempfile.mkdtemp(prefix="dagyo-fuzz-"))


def fuzz_progdef(data: bytes) -> None:
    path = _PROGDEF_DIR / "progdef.json"
    path.write_bytes(data)
    load_progdef(path)


def fuzz_frame(data: bytes) -> None:
    frame = decode_frame(data, "fuzz.out -> fuzz.in")
    for item in frame.items:
        try:
            Text.FromString(item)
        except Exception as e:  # an undecodable item is a DecodeError panic in the job
            if type(e).__name__ != "DecodeError":
                raise


def fuzz_job(data: bytes) -> None:
    try:
        job = Job.FromString(data)
    except Exception as e:
        if type(e).__name__ != "DecodeError":
            raise
        return
    dict(job.inputs)
    dict(job.outputs)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "flow": fuzz_flow,
    "progdef": fuzz_progdef,
    "frame": fuzz_frame,
    "job": fuzz_job,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--findings", type=Path, default=ROOT / "bench" / "fuzz-findings")
    args, rest = parser.parse_known_args()
    target = TARGETS[args.target]
    corpus = Path(tempfile.mkdtemp(prefix=f"dagyo-fuzz-{args.target}-"))
    for seed in SEEDS.get(args.target, []):
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    findings: dict[str, str] = {}
    state = {"executions": 0}
    started = time.monotonic()
    end = started + args.seconds

    def one_input(data: bytes) -> None:
        state["executions"] += 1
        try:
            target(data)
        except DagyoError:
            pass
        except RecursionError:
            record(data, "RecursionError")
        except Exception as e:
            record(data, f"{type(e).__name__}: {str(e)[:120]}")
        if time.monotonic() > end:
            report()

    def record(data: bytes, what: str) -> None:
        key = re.sub(r"0x[0-9a-f]+|\d+", "#", what)[:60]
        if key in findings:
            return
        args.findings.mkdir(parents=True, exist_ok=True)
        name = f"{args.target}-{hashlib.sha1(data).hexdigest()[:12]}"
        (args.findings / name).write_bytes(data)
        findings[key] = f"{what} (input {name})"

    def report() -> None:
        print(
            json.dumps(
                {
                    "target": args.target,
                    "seconds": round(time.monotonic() - started, 1),
                    "executions": state["executions"],
                    "findings": sorted(findings.values()),
                }
            ),
            flush=True,
        )
        os._exit(0)  # libFuzzer's own exit skips Python's; the line above is the result

    sys.setrecursionlimit(2000)
    atheris.Setup([sys.argv[0], *rest, str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
