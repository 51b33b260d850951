"""Reading and checking progdef.json: every problem of a file at once, each naming it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from executor.core.constants import (
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_S,
    DRAIN_GRACE_S,
    ERROR_TYPE,
)
from executor.core.errors import JsonProblems, ProgdefInvalid, ProtosInvalid
from executor.core.progdef.model import (
    MAX_CONCURRENCY,
    MAX_JOBS_LIMIT,
    NAME,
    QUANTITY,
    SCALING_MODES,
    SECRET_NAME,
    STYLES,
    TYPENAME,
    Progdef,
    Resources,
    Retries,
    Scaling,
    did_you_mean,
    is_type_variable,
)
from executor.core.progdef.node import RUNTIMES, node_target_problem
from executor.core.progdef.protos import check_proto_paths, foreign_type
from executor.core.registry import load_types
from executor.core.strictjson import parse_strict
from executor.core.types import unknown_typename

_TOP_KEYS = {
    "name",
    "description",
    "inputs",
    "outputs",
    "run",
    "runtime",
    "style",
    "init",
    "retries",
    "image",
    "scaling",
    "resources",
    "env",
    "secrets",
    "drain_grace_s",
    "errors",
    "protos",
    "tenants",
    "deterministic",
    "concurrency",
}
_REQUIRED = ("name", "inputs", "outputs", "run")
_SECTION_KEYS: dict[str, set[str]] = {
    "image": {"dockerfile", "context"},
    "scaling": {"max_jobs", "min_executors", "max_executors", "mode"},
    "resources": {"cpu", "memory", "gpu"},
    "retries": {"attempts", "backoff_ms"},
}


def load_progdef(path: Path | str) -> Progdef:
    """Load and check one progdef.json (or a folder holding one).

    Raises:
        ProgdefInvalid: naming the file and every problem in it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "progdef.json"
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ProgdefInvalid([f"{path}: cannot read: {e.strerror}"]) from e
    try:
        data = parse_strict(text, source=str(path))
    except JsonProblems as e:
        raise ProgdefInvalid(e.problems) from None
    return parse_progdef(data, source=str(path), directory=path.parent)


def parse_progdef(
    data: Any, *, source: str = "progdef.json", directory: Path | None = None
) -> Progdef:
    """Check a decoded progdef.json document and build the Progdef.

    Raises:
        ProgdefInvalid: with one line per problem, each prefixed by ``source``.
    """
    problems: list[str] = []

    def problem(text: str) -> None:
        problems.append(f"{source}: {text}")

    if not isinstance(data, dict):
        raise ProgdefInvalid([f"{source}: expected a JSON object at the top level"])
    for key in sorted(set(data) - _TOP_KEYS):
        problem(f"unknown key {key!r}{did_you_mean(key, _TOP_KEYS)}")
    for key in _REQUIRED:
        if key not in data:
            problem(f"missing required key {key!r}")
    name = data.get("name", "")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problem(f"name {name!r} must match {NAME.pattern}")
    ports = {}
    for side in ("inputs", "outputs"):
        ports[side] = _check_ports(data.get(side, {}), side, problem)
    unbound = {t for t in ports["outputs"].values() if is_type_variable(t)} - {
        t for t in ports["inputs"].values() if is_type_variable(t)
    }
    for port, port_type in ports["outputs"].items():
        if port_type in unbound:
            problem(
                f"output {port!r} has type variable {port_type} that no input binds: "
                "use a typename, or give an input the same variable"
            )
    runtime = data.get("runtime", "python")
    if runtime not in RUNTIMES:
        problem(f"runtime {runtime!r} must be one of {', '.join(RUNTIMES)}")
    run = data.get("run", "")
    if runtime != "node" and (not isinstance(run, str) or not re.fullmatch(r"[\w.]+:\w+", run)):
        problem(f"run {run!r} must be 'module:attribute', e.g. 'main:run'")
    style = data.get("style", "stream")
    if style not in STYLES:
        problem(f"style {style!r} must be one of {', '.join(STYLES)}")
    errors = data.get("errors") or ""  # null, as in DESIGN.md, is no error port
    if errors and (not isinstance(errors, str) or ports["outputs"].get(errors) != ERROR_TYPE):
        problem(
            f"progdef {name!r}: errors {errors!r} must name an output port of type "
            f"{ERROR_TYPE}; the outputs "
            f"are {', '.join(f'{p}: {t}' for p, t in ports['outputs'].items()) or 'none'}"
        )
        errors = ""
    data_outputs = len(ports["outputs"]) - (1 if errors else 0)
    if style == "function" and (len(ports["inputs"]) != 1 or data_outputs > 1):
        problem(
            "style 'function' needs exactly one input and at most one output; "
            "use style 'stream' for other shapes"
        )
    init = data.get("init", "")
    if runtime == "node":
        context = _node_context(directory, data.get("image"))
        for key, target in (("run", run), ("init", init)):
            if target and (why := node_target_problem(target, context, key)):
                problem(why)
        if init and style != "function":
            problem("init is only for style 'function'")
    elif init and (style != "function" or not re.fullmatch(r"[\w.]+:\w+", str(init))):
        problem("init must be 'module:attribute' and is only for style 'function'")
    sections = {}
    for section, keys in _SECTION_KEYS.items():
        value = data.get(section, {})
        if not isinstance(value, dict):
            problem(f"{section} must be an object")
            value = {}
        for key in sorted(set(value) - keys):
            problem(f"unknown key {section}.{key}{did_you_mean(key, keys)}")
        sections[section] = value
    scaling_values = dict(sections["scaling"])
    mode = scaling_values.pop("mode", SCALING_MODES[0])
    if mode not in SCALING_MODES:
        problem(f"scaling.mode {mode!r} must be one of {', '.join(SCALING_MODES)}")
        mode = SCALING_MODES[0]
    elif mode == "job" and scaling_values.setdefault("max_jobs", 1) != 1:
        problem(
            f"scaling.max_jobs {scaling_values['max_jobs']}: a progdef of mode job runs one "
            "job per pod; leave max_jobs out (or set it to 1)"
        )
    scaling = replace(_build(Scaling, scaling_values, "scaling", problem, int), mode=mode)
    if not 1 <= scaling.max_jobs <= MAX_JOBS_LIMIT:
        problem(
            f"scaling.max_jobs {scaling.max_jobs} is out of bounds: from 1 to {MAX_JOBS_LIMIT} "
            "(the most jobs a mailbox consumer can prefetch)"
        )
    if not 0 <= scaling.min_executors <= scaling.max_executors:
        problem("scaling needs 0 <= min_executors <= max_executors")
    resources = _build(Resources, sections["resources"], "resources", problem, None)
    for key in ("cpu", "memory"):
        if not QUANTITY.fullmatch(str(getattr(resources, key))):
            problem(f"resources.{key} {getattr(resources, key)!r} is not a quantity like '100m'")
    if isinstance(resources.gpu, bool) or not isinstance(resources.gpu, int) or resources.gpu < 0:
        problem(f"resources.gpu {json.dumps(resources.gpu)} must be a whole number >= 0, e.g. 1")
    retries_raw = sections["retries"]
    retries = Retries(
        attempts=_number(
            retries_raw.get("attempts", DEFAULT_RETRY_ATTEMPTS),
            "retries.attempts",
            problem,
            minimum=1,
            kind=int,
        ),
        backoff_s=_number(
            retries_raw.get("backoff_ms", DEFAULT_RETRY_BACKOFF_S * 1000),
            "retries.backoff_ms",
            problem,
            minimum=0,
        )
        / 1000,
    )
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        problem("env must be an object of string values")
        env = {}
    secrets = data.get("secrets", [])
    if not isinstance(secrets, list) or not all(
        isinstance(s, str) and SECRET_NAME.fullmatch(s) for s in secrets
    ):
        problem("secrets must be a list of environment variable names")
        secrets = []
    image = sections["image"]
    grace = _number(data.get("drain_grace_s", DRAIN_GRACE_S), "drain_grace_s", problem, minimum=0)
    description = data.get("description", "")
    if not isinstance(description, str):
        problem("description must be a string")
        description = ""
    protos = data.get("protos", [])
    # Kept apart: a progdef whose only problems are its protos is left out of a catalogue.
    proto_problems: list[str] = []
    if not isinstance(protos, list):
        problem("protos must be a list of .proto file names, relative to the progdef's folder")
        protos = []
    elif directory is not None:
        proto_problems = check_proto_paths(directory, protos, source=source)
    tenants = data.get("tenants")
    if tenants is not None and (
        not isinstance(tenants, list) or not all(isinstance(t, str) and t for t in tenants)
    ):
        problem('tenants must be null (every tenant) or a list of tenant names, e.g. ["team-a"]')
        tenants = None
    deterministic = data.get("deterministic", False)
    if not isinstance(deterministic, bool):
        problem(
            f"deterministic {json.dumps(deterministic)} must be true (outputs depend only on "
            "the input items and the version, so results may be cached) or false"
        )
        deterministic = False
    concurrency = _concurrency(data.get("concurrency", 1), str(name), style, problem)
    # The custom types its ports may use: those of its own protos (None: any known one).
    own_types: set[str] | None = None if directory is None else set()
    if protos and directory is not None and not problems and not proto_problems:
        try:
            own_types = load_types(directory, protos, source=source, progdef=str(name))
        except ProgdefInvalid as e:
            proto_problems.extend(e.problems)
    if not problems and not proto_problems:
        for side in ("inputs", "outputs"):
            for port, port_type in ports[side].items():
                if is_type_variable(port_type):
                    continue
                unknown = unknown_typename(port_type)
                if not unknown and own_types is not None and directory is not None:
                    unknown = "" if port_type in own_types else foreign_type(port_type, directory)
                if unknown:
                    problem(f"{side[:-1]} {port!r}: {unknown}")
    if problems:
        raise ProgdefInvalid(problems + proto_problems)
    if proto_problems:
        raise ProtosInvalid(
            proto_problems, progdef=name, tenants=None if tenants is None else tuple(tenants)
        )
    return Progdef(
        name=name,
        inputs=ports["inputs"],
        outputs=ports["outputs"],
        run=run,
        runtime=runtime,
        description=description,
        style=style,
        init=init,
        retries=retries,
        dockerfile=str(image.get("dockerfile", "Dockerfile")),
        context=str(image.get("context", ".")),
        scaling=scaling,
        resources=resources,
        env=dict(env),
        secrets=tuple(secrets),
        drain_grace_s=grace,
        errors=errors,
        protos=tuple(protos),
        tenants=None if tenants is None else tuple(tenants),
        deterministic=deterministic,
        concurrency=concurrency,
        directory=directory,
        raw=data,
    )


def _concurrency(value: Any, name: str, style: str, problem: Any) -> int:
    """The progdef's ``concurrency``: a whole number from 1 to MAX_CONCURRENCY, above 1
    for function style only."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        problem(
            f"progdef {name!r}: concurrency {json.dumps(value)} must be a whole number from 1 "
            f"to {MAX_CONCURRENCY} (how many items of one job are in flight at once)"
        )
        return 1
    if value > 1 and style != "function":
        problem(
            f"progdef {name!r}: concurrency {value} is only for style 'function' (a "
            "stream-style run(job) chooses itself what it does at once, e.g. with async def run)"
        )
        return 1
    return value


def _node_context(directory: Path | None, image: Any) -> Path | None:
    """The build context a node progdef's files are relative to (None: not from a folder)."""
    if directory is None:
        return None
    context = image.get("context", ".") if isinstance(image, dict) else "."
    return (directory / str(context)).resolve()


def _check_ports(value: Any, side: str, problem: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        problem(f"{side} must be an object of port name -> typename")
        return {}
    ports: dict[str, str] = {}
    for port, port_type in value.items():
        if not NAME.fullmatch(port):
            problem(f"{side} port {port!r} must match {NAME.pattern}")
        elif not isinstance(port_type, str) or not (
            TYPENAME.fullmatch(port_type) or is_type_variable(port_type)
        ):
            problem(
                f"{side}.{port}: {port_type!r} is neither a protobuf full name such as "
                "'dagyo.types.Text' nor a type variable such as 'T'"
            )
        else:
            ports[port] = port_type
    return ports


def _number(value: Any, where: str, problem: Any, *, minimum: float, kind: type = float) -> Any:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not isinstance(value, int))
    ):
        problem(f"{where} must be a {'whole ' if kind is int else ''}number")
        return kind(minimum)
    if not math.isfinite(value):
        problem(f"{where} must be a finite number")
        return kind(minimum)
    if value < minimum:
        problem(f"{where} must be at least {minimum}")
    return value


def _build(cls: Any, values: dict[str, Any], section: str, problem: Any, kind: Any) -> Any:
    defaults = cls()
    kwargs = {}
    for key in values:
        if key not in cls.__dataclass_fields__:
            continue
        value = values[key]
        if kind is int:
            value = _number(value, f"{section}.{key}", problem, minimum=0, kind=int)
        kwargs[key] = value
    return cls(**{**defaults.__dict__, **kwargs})
