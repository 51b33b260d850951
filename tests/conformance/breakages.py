"""Shows each conformance case failing against an executor that breaks what it checks.

``python -m tests.conformance.breakages [BREAK…]`` runs, for each break of
``broken_executor.py`` (all by default), the cases that break must fail, against the
Python executor broken that way, and prints one line per break: ``ok`` when every one of
its cases failed, else the cases that passed. Exit 1 when a case passed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conformance.broken_executor import BREAKS, ENV_BREAK
from tests.conftest import ROOT

COMMAND = "python -m tests.conformance.broken_executor {progdef}"
FRAMES = "tests/conformance/test_frame_checks.py::test_a_bad_frame_panics_the_job_naming_the_edge"
STREAMS = "tests/conformance/test_streams.py::"
JOBS = "tests/conformance/test_jobs.py::"

# Each break, and the cases it must fail.
CASES: dict[str, list[str]] = {
    "seq": [
        f"{FRAMES}[a gap in seq]",
        f"{FRAMES}[a first frame that is not seq 0]",
        f"{FRAMES}[another frame under a seq taken]",
    ],
    "repeat": [f"{STREAMS}test_a_frame_delivered_again_is_dropped"],
    "typename": [f"{FRAMES}[another typename]", f"{FRAMES}[no typename]"],
    "token": [f"{FRAMES}[a forged producer token]", f"{FRAMES}[no producer token]"],
    "bounds": [f"{FRAMES}[more items than a frame may hold]"],
    "malformed": [f"{FRAMES}[a body that is no frame]", f"{FRAMES}[an item that is no Text]"],
    "eos": [f"{STREAMS}test_consts_are_sent_in_order_then_end_of_stream"],
    "late-eos": [f"{STREAMS}test_consts_are_sent_in_order_then_end_of_stream"],
    "order": [f"{STREAMS}test_a_stream_is_read_and_passed_on_in_order"],
    "fanout": [f"{STREAMS}test_an_output_feeding_two_inputs_sends_every_frame_to_both"],
    "backpressure": [f"{STREAMS}test_a_full_stream_holds_its_producer_back_and_loses_nothing"],
    "counts": [f"{STREAMS}test_consts_are_sent_in_order_then_end_of_stream"],
    "slots": ["tests/conformance/test_slots.py"],
    "heartbeat": [f"{JOBS}test_heartbeats_name_the_running_jobs_with_their_counts"],
    "stop": [f"{JOBS}test_a_stop_ends_the_flows_job_as_stopped"],
    "stopped-flow": [f"{JOBS}test_a_job_of_a_stopped_flow_is_dropped_unrun"],
    "traceback": [f"{JOBS}test_a_panic_is_reported_with_the_authors_traceback"],
    "refuse": [
        f"{JOBS}test_a_job_for_another_progdef_or_version_is_refused[version]",
        f"{JOBS}test_a_job_for_another_progdef_or_version_is_refused[progdef]",
    ],
    "drain": ["tests/conformance/test_drain.py"],
    "errorport": ["tests/conformance/test_error_ports.py"],
    "types": ["tests/conformance/test_custom_types.py"],
    "inflight": ["tests/conformance/test_concurrency.py"],
}
assert set(CASES) == set(BREAKS), "every break has its cases, every case list its break"


def passed_under(name: str) -> list[str]:
    """The cases of ``name`` that passed against the executor broken that way."""
    env = {**os.environ, ENV_BREAK: name, "DAGYO_CONFORMANCE_WAIT_S": "10"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-q", "-rA"]
        + ["--executor-command", COMMAND, *CASES[name]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    passed = re.findall(r"^PASSED (\S.*)$", run.stdout, re.MULTILINE)
    failed = re.findall(r"^(?:FAILED|ERROR) ", run.stdout, re.MULTILINE)
    if not failed and not passed:
        raise SystemExit(f"{name}: pytest ran nothing:\n{run.stdout}{run.stderr}")
    return passed


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        print(f"no such break: {', '.join(unknown)} (one of {', '.join(CASES)})")
        return 2
    status = 0
    for name in names or list(CASES):
        passed = passed_under(name)
        print(f"{name:13} {'ok' if not passed else 'PASSED: ' + '; '.join(passed)}", flush=True)
        status |= bool(passed)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
