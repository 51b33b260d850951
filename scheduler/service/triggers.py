"""CloudEvents triggers: the files of ``DAGYO_TRIGGERS``, what they match, what they bind.

A trigger file (JSON or YAML) maps CloudEvents onto a flow::

    {"name": "on-upload",
     "flow": "thumbnail.json",
     "match": {"type": "com.example.object.created", "source": "s3://photos"},
     "set": {"fetch.key": "$.data.key", "fetch.size": "$.data.size"},
     "batch": {"max_events": 1}}

An event matches on its exact ``type``, and on ``source`` and ``subject`` when the trigger
names them (exactly, or as a prefix ending in ``*``). Each ``set`` entry gives input
``NODE.PORT`` the value at a path of the event: ``$.id``, ``$.source``, ``$.subject``,
``$.type``, ``$.time`` or ``$.data.<key>.<key>…`` (a number indexes a list); ``$.data``
is the whole data. A batch of several events gives each input the list of their values.
Events come by HTTP (``DAGYO_TRIGGERS_HTTP``) unless the trigger names an AMQP exchange:
``"amqp": {"exchange": X, "routing_key": K}``. With tokens on, ``"tenant"`` says whose
flows it starts. Firing them is ``trigger_firing.py``'s, receiving events ``trigger_sources.py``'s.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from executor.core.errors import DagyoError, EventRefused, FlowInvalid, JsonProblems
from executor.core.progdef import NAME, did_you_mean
from executor.core.strictjson import parse_strict
from scheduler.flow.model import Flow
from scheduler.flow.parse import parse_flow
from scheduler.flow.problems import json_excerpt

SUFFIXES = (".json", ".yaml", ".yml")
KEYS = ("name", "flow", "match", "set", "batch", "amqp", "tenant")
MATCH_KEYS = ("type", "source", "subject")
BATCH_KEYS = ("max_events", "max_wait_s")
AMQP_KEYS = ("exchange", "routing_key")
ATTRIBUTES = ("id", "source", "subject", "type", "time")
# A batch is a list const of one flow: past these the flow and the wait grow unreasonable.
MAX_BATCH_EVENTS = 1000
MAX_BATCH_WAIT_S = 60.0
# How long a batch of several events waits for more when the trigger does not say.
DEFAULT_BATCH_WAIT_S = 1.0


@dataclass(frozen=True)
class Trigger:
    """One valid trigger file.

    Attributes:
        name: unique among the triggers.
        file: the trigger file.
        flow_path: the flow file it submits (relative paths are from the trigger's folder).
        flow_text: that file's Flow JSON, read at start.
        match: ``type`` (always), ``source`` and ``subject`` (when given): exact, or a
            prefix ending in ``*``.
        sets: ``node.port`` -> the event path bound to it.
        max_events: events gathered into one flow.
        max_wait_s: how long a batch waits for more events before its flow starts.
        amqp: (exchange, routing key) its events come from; None: HTTP.
        tenant: whose flows it starts (empty when the scheduler runs open).
    """

    name: str
    file: Path
    flow_path: Path
    flow_text: str
    match: Mapping[str, str]
    sets: Mapping[str, str]
    max_events: int = 1
    max_wait_s: float = 0.0
    amqp: tuple[str, str] | None = None
    tenant: str = ""

    @property
    def batches(self) -> bool:
        """Whether its events wait for others to share a flow (``max_wait_s``)."""
        return self.max_events > 1 and self.max_wait_s > 0

    @property
    def events(self) -> str:
        """Where its events come from: ``http`` or ``amqp EXCHANGE ROUTING_KEY``."""
        return "http" if self.amqp is None else f"amqp {self.amqp[0]} {self.amqp[1]}"

    def matches(self, event: Any) -> bool:
        """Whether a CloudEvent is one this trigger takes."""
        return not self.mismatch(event)

    def mismatch(self, event: Any) -> str:
        """Why it does not take a CloudEvent, naming the first field that differs
        (``takes source "s3://photos*", not "s3://videos"``); "" when it takes it."""
        for key, pattern in self.match.items():
            value = attribute(event, key) or ""
            if not _matches(pattern, value):
                return f"takes {key} {json_excerpt(pattern)}, not {json_excerpt(value)}"
        return ""


@dataclass(frozen=True)
class InvalidTrigger:
    """A trigger file that was refused, with every problem found in it."""

    name: str
    file: Path
    problems: tuple[str, ...] = field(default=())


def _matches(pattern: str, value: str) -> bool:
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


# --- the files -------------------------------------------------------------------------------


def trigger_files(directory: Path) -> list[Path]:
    """The trigger files of ``directory`` by name; OSError when it cannot be read."""
    return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())


def load_triggers(
    directory: Path, *, tenant_required: bool
) -> tuple[list[Trigger], list[InvalidTrigger]]:
    """Read every trigger file of ``directory`` (``*.json``, ``*.yaml``, ``*.yml``).

    A file that is invalid is returned with its problems and does not stop the others.

    Args:
        tenant_required: tokens are on, so each trigger must name its tenant.

    Raises:
        DagyoError: when the directory cannot be read.
    """
    try:
        files = trigger_files(directory)
    except OSError as e:
        raise DagyoError(
            f"cannot read the triggers folder {directory} ({e.strerror}): set DAGYO_TRIGGERS "
            "to a folder of trigger files"
        ) from e
    valid: list[Trigger] = []
    invalid: list[InvalidTrigger] = []
    for path in files:
        try:
            trigger = parse_trigger(path, tenant_required=tenant_required)
        except FlowInvalid as e:
            invalid.append(InvalidTrigger(name=path.stem, file=path, problems=tuple(e.problems)))
            continue
        if any(t.name == trigger.name for t in valid):
            first = next(t for t in valid if t.name == trigger.name)
            problem = f"{path}: name: {trigger.name!r} is taken by {first.file}: rename one"
            invalid.append(InvalidTrigger(name=trigger.name, file=path, problems=(problem,)))
            continue
        valid.append(trigger)
    # The flow files may sit beside the triggers: those are not trigger files.
    flows = {t.flow_path.resolve() for t in valid}
    return (
        [t for t in valid if t.file.resolve() not in flows],
        [t for t in invalid if t.file.resolve() not in flows],
    )


def parse_trigger(path: Path, *, tenant_required: bool = False) -> Trigger:
    """Read and check one trigger file.

    Raises:
        FlowInvalid: every problem, each ``<file>: <key>: <what>; <fix>``.
    """
    problems: list[str] = []

    def problem(where: str, text: str) -> None:
        problems.append(f"{path}: {where}: {text}" if where else f"{path}: {text}")

    data = _read(path)
    unknown = [k for k in data if k not in KEYS]
    for key in unknown:
        problem(
            str(key), f"unknown key{did_you_mean(str(key), KEYS)}; the keys are {', '.join(KEYS)}"
        )
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not NAME.match(name):
        problem("name", f"{json_excerpt(name)} must match {NAME.pattern}")
        name = path.stem
    flow_path, flow_text, flow = _flow(path, data.get("flow"), problem)
    match = _strings(data.get("match"), "match", MATCH_KEYS, problem, required=("type",))
    for key, pattern in match.items():
        if "*" in pattern[:-1]:
            problem(f"match.{key}", f"{pattern!r}: '*' may only end a prefix, e.g. 's3://photos/*'")
    sets = _sets(data.get("set", {}), flow, problem)
    max_events, max_wait_s = _batch(data.get("batch"), problem)
    amqp = None
    if "amqp" in data:
        found = _strings(data["amqp"], "amqp", AMQP_KEYS, problem, required=AMQP_KEYS)
        if len(found) == len(AMQP_KEYS):
            amqp = (found["exchange"], found["routing_key"])
    tenant = data.get("tenant", "")
    if not isinstance(tenant, str) or (tenant_required and not tenant):
        problem("tenant", 'name the tenant whose flows it starts (tokens are on), e.g. "team-a"')
        tenant = ""
    if problems:
        raise FlowInvalid(problems)
    return Trigger(
        name=name,
        file=path,
        flow_path=flow_path,
        flow_text=flow_text,
        match=match,
        sets=sets,
        max_events=max_events,
        max_wait_s=max_wait_s,
        amqp=amqp,
        tenant=tenant,
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FlowInvalid([f"{path}: cannot read the trigger file: {e}"]) from None
    try:
        data = (
            parse_strict(text, source=str(path)) if path.suffix == ".json" else yaml.safe_load(text)
        )
    except JsonProblems as e:
        raise FlowInvalid(e.problems) from None
    except yaml.YAMLError as e:
        raise FlowInvalid([f"{path}: not YAML: {e}"]) from None
    if not isinstance(data, dict):
        raise FlowInvalid([f"{path}: a trigger is a mapping with the keys {', '.join(KEYS)}"])
    return data


def _flow(path: Path, value: Any, problem: Any) -> tuple[Path, str, Flow | None]:
    if not isinstance(value, str) or not value:
        problem("flow", 'name the flow file it submits, e.g. "flow": "thumbnail.json"')
        return path, "", None
    flow_path = Path(value) if Path(value).is_absolute() else path.parent / value
    try:
        text = flow_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        problem(
            "flow",
            f"{value}: cannot read the flow file ({reason}); paths are relative to "
            f"the trigger's folder",
        )
        return flow_path, "", None
    try:
        return flow_path, text, parse_flow(text, source=str(flow_path))
    except FlowInvalid as e:
        for line in e.problems:
            problem("flow", line)
        return flow_path, text, None


def _strings(
    value: Any, where: str, keys: tuple[str, ...], problem: Any, *, required: tuple[str, ...]
) -> dict[str, str]:
    if not isinstance(value, dict):
        problem(where, f"a mapping with {', '.join(keys)}")
        return {}
    found: dict[str, str] = {}
    for key, text in value.items():
        if key not in keys:
            problem(
                f"{where}.{key}",
                f"unknown key{did_you_mean(str(key), keys)}; the keys are {', '.join(keys)}",
            )
        elif not isinstance(text, str) or not text:
            problem(f"{where}.{key}", f"{json_excerpt(text)} must be a text")
        else:
            found[key] = text
    for key in required:
        if key not in value:
            problem(where, f"{key} is required")
    return found


def _sets(value: Any, flow: Flow | None, problem: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        problem("set", 'a mapping of NODE.PORT to an event path, e.g. {"fetch.key": "$.data.key"}')
        return {}
    sets: dict[str, str] = {}
    for target, path in value.items():
        node, dot, port = str(target).partition(".")
        where = f"set.{target}"
        if not dot or not node or not port:
            problem(where, "write NODE.PORT, e.g. fetch.key")
            continue
        if flow is not None and node not in flow.nodes:
            problem(where, f"no node {node!r} in the flow{did_you_mean(node, flow.nodes)}")
            continue
        if not isinstance(path, str) or _path_problem(path):
            problem(where, f"{json_excerpt(path)}: {_path_problem(str(path))}")
            continue
        sets[str(target)] = path
    return sets


def _path_problem(path: str) -> str:
    parts = path.split(".")
    if parts[0] != "$" or len(parts) < 2 or any(not part for part in parts[1:]):
        return "an event path is $.id, $.source, $.subject, $.type, $.time or $.data.KEY…"
    if parts[1] == "data" or (len(parts) == 2 and parts[1] in ATTRIBUTES):
        return ""
    return f"no attribute {parts[1]!r}{did_you_mean(parts[1], (*ATTRIBUTES, 'data'))}"


def _batch(value: Any, problem: Any) -> tuple[int, float]:
    if value is None:
        return 1, 0.0
    if not isinstance(value, dict):
        problem("batch", 'a mapping, e.g. {"max_events": 10, "max_wait_s": 2}')
        return 1, 0.0
    for key in value:
        if key not in BATCH_KEYS:
            problem(f"batch.{key}", f"unknown key{did_you_mean(str(key), BATCH_KEYS)}")
    events = value.get("max_events", 1)
    if (
        isinstance(events, bool)
        or not isinstance(events, int)
        or not 1 <= events <= MAX_BATCH_EVENTS
    ):
        problem(
            "batch.max_events", f"{json_excerpt(events)}: a whole number, 1 to {MAX_BATCH_EVENTS}"
        )
        events = 1
    wait = value.get("max_wait_s", DEFAULT_BATCH_WAIT_S if events > 1 else 0.0)
    if (
        isinstance(wait, bool)
        or not isinstance(wait, int | float)
        or not 0 <= wait <= MAX_BATCH_WAIT_S
    ):
        problem("batch.max_wait_s", f"{json_excerpt(wait)}: seconds, 0 to {MAX_BATCH_WAIT_S:g}")
        wait = 0.0
    return events, float(wait)


# --- events ----------------------------------------------------------------------------------


def attribute(event: Any, name: str) -> str | None:
    """A CloudEvent's context attribute as text (``time`` in RFC 3339), or None."""
    value = event.get_attributes().get(name)
    if isinstance(value, datetime.datetime):
        return value.isoformat().replace("+00:00", "Z")
    return None if value is None else str(value)


def describe(event: Any) -> str:
    """``event ID (type T, source S)``, for messages."""
    id_, type_, source = (json_excerpt(attribute(event, k)) for k in ("id", "type", "source"))
    return f"event {id_} (type {type_}, source {source})"


def bind(trigger: Trigger, event: Any) -> dict[str, Any]:
    """Each ``set`` target of the trigger with the event's value at its path.

    Raises:
        EventRefused: naming the path the event lacks and the input it was to feed.
    """
    values: dict[str, Any] = {}
    for target, path in trigger.sets.items():
        parts = path.split(".")[1:]
        if parts[0] != "data":
            value: Any = attribute(event, parts[0])
        else:
            value = event.get_data()
            for part in parts[1:]:
                value = _step(value, part)
            if value is _MISSING:
                value = None
        if value is None:
            raise EventRefused(
                f"{describe(event)} has no {path}, which trigger {trigger.name} binds to "
                f"{target}: send it, or change the trigger's set"
            )
        values[target] = value
    return values


_MISSING = object()


def _step(value: Any, part: str) -> Any:
    if isinstance(value, dict):
        return value.get(part, _MISSING)
    if isinstance(value, list) and part.isdigit() and int(part) < len(value):
        return value[int(part)]
    return _MISSING
