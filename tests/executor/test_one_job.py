"""``scaling.mode: job``: one job per pod. The progdef.json form, and the executor's
``--one-job`` mode on the real broker: it takes exactly one job, runs it, and exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import ProgdefInvalid
from executor.core.progdef import load_progdef
from tests.cluster import LocalCluster, state_of
from tests.flows import consts, names
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
GREET = json.loads((ROOT / "progdefs" / "greet" / "progdef.json").read_text())
WAIT_S = 60.0


def write(tmp_path: Path, scaling: dict[str, Any]) -> Path:
    folder = tmp_path / "greet"
    folder.mkdir()
    (folder / "main.py").write_text("def handler(ctx, item):\n    return item\n")
    (folder / "progdef.json").write_text(json.dumps({**GREET, "scaling": scaling}))
    return folder


def test_mode_job_runs_one_job_per_pod_and_deployment_stays_the_default(tmp_path: Path) -> None:
    assert load_progdef(ROOT / "progdefs" / "greet").scaling.mode == "deployment"
    progdef = load_progdef(write(tmp_path, {"mode": "job", "max_executors": 4}))
    assert progdef.scaling.mode == "job"
    assert progdef.scaling.max_jobs == 1, "a pod runs one job: one job slot"
    assert progdef.scaling.max_executors == 4


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [
        ({"mode": "pod"}, "scaling.mode 'pod' must be one of deployment, job"),
        ({"mode": "job", "max_jobs": 8}, "scaling.max_jobs 8: a progdef of mode job runs one job"),
    ],
    ids=["unknown-mode", "job-with-max-jobs"],
)
def test_a_wrong_mode_is_one_line_naming_the_key(
    tmp_path: Path, scaling: dict[str, Any], expected: str
) -> None:
    folder = write(tmp_path, scaling)
    with pytest.raises(ProgdefInvalid) as caught:
        load_progdef(folder)
    (line,) = caught.value.problems
    assert line.startswith(f"{folder / 'progdef.json'}: ")
    assert expected in line


def test_the_progdef_schema_knows_the_modes() -> None:
    from jsonschema import Draft202012Validator

    from scheduler.flow.parse import schema_path

    validator = Draft202012Validator(json.loads(schema_path("progdef").read_text()))
    for mode in ("deployment", "job"):
        assert validator.is_valid({**GREET, "scaling": {"mode": mode}})
    assert not validator.is_valid({**GREET, "scaling": {"mode": "pod"}})


def greet_flow(count: int) -> dict[str, Any]:
    return {
        "name": "one-job",
        "nodes": {"s": {"progdef": "source"}, "hi": {"progdef": "greet"}},
        "edges": [{"from": "s.src", "to": "hi.name"}],
        "consts": [{"to": "s.count", "values": consts(count)}],
        "exports": {"greetings": "hi.greeting"},
    }


def one_job_executor(cluster: LocalCluster, log: Path, **env: str) -> subprocess.Popen[bytes]:
    progdef = cluster.catalogue["greet"]
    environment = {
        **os.environ,
        **cluster.local.extra_env,
        "DAGYO_QUEUE": cluster.amqp_url,
        "DAGYO_JOBS": progdef.mailbox,
        **env,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "executor", str(progdef.directory), "--one-job"],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def flow_states(cluster: LocalCluster, flows: list[str]) -> list[str]:
    with cluster.client() as client:
        return [state_of(client.get(flow_id)) for flow_id in flows]


def test_a_one_job_executor_takes_exactly_one_job_and_exits_0(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = LocalCluster(broker_url, tmp_path, names=("source", "greet"))
    # As `dagyo deploy` renders it: an autoscaler (KEDA's ScaledJob) starts greet's pods.
    (cluster.catalogue_dir / "greet" / "AUTOSCALER").write_text("keda\n")
    cluster.start_executor("source")
    log = tmp_path / "one-job.log"
    pods = [one_job_executor(cluster, log)]
    try:
        cluster.wait_for_consumer("greet")
        cluster.start_scheduler()
        flows = [cluster.submit(greet_flow(3)), cluster.submit(greet_flow(4))]
        assert pods[0].wait(WAIT_S) == 0, log.read_text()
        assert "ran its one job" in log.read_text()
        # One flow ran on the first executor, now gone; the other's job waits for the next.
        eventually(
            lambda: flow_states(cluster, flows),
            WAIT_S,
            until=lambda states: sorted(states) == ["running", "succeeded"],
            what="one flow succeeded and one running",
        )
        with cluster.channel() as channel:
            mailbox = channel.queue_declare(cluster.catalogue["greet"].mailbox, passive=True)
        assert mailbox.method.message_count == 1
        pods.append(one_job_executor(cluster, log))
        assert pods[1].wait(WAIT_S) == 0, log.read_text()
        counts = sorted(len(cluster.wait(f).exports) for f in flows)
        assert counts == [3, 4], "each job ran once, on one executor"
        record = cluster.wait(flows[0])
        values = [json.loads(e.value_json) for e in record.exports]
        assert values == [{"text": f"hello {n['text']}"} for n in names(3)]
    finally:
        for pod in pods:
            if pod.poll() is None:
                pod.kill()
        cluster.close()


def test_a_one_job_executor_that_gets_no_job_exits_0_when_idle(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = LocalCluster(broker_url, tmp_path, names=("greet",))
    log = tmp_path / "one-job.log"
    pod = one_job_executor(cluster, log, DAGYO_ONE_JOB_IDLE_S="1")
    try:
        assert pod.wait(WAIT_S) == 0, log.read_text()
        assert "no job came within 1 s" in log.read_text()
    finally:
        if pod.poll() is None:
            pod.kill()
        cluster.close()
