"""Loading a progdef's code: the ``run`` target, ``init``, and its Context."""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from executor._runtime.aio import event_loop
from executor.core.errors import DagyoError, InitFailed
from executor.core.progdef import Progdef, did_you_mean
from executor.core.settings import env_number
from executor.sdk import Context

IMPORT_TIMEOUT_S = 60.0


class Program:
    """A progdef's loaded code, shared by every job of that progdef in this process."""

    def __init__(
        self, progdef: Progdef, *, run: Callable[..., Any], init: Callable[[Context], Any] | None
    ) -> None:
        self.progdef = progdef
        self.run = run
        self.init = init
        # An ``async def`` run or handler: its coroutines run on the process's event loop.
        self.is_async = inspect.iscoroutinefunction(run)
        self._context: Context | None = None
        self._lock = threading.Lock()

    @property
    def style(self) -> str:
        """``stream`` or ``function``."""
        return self.progdef.style

    @property
    def pipelined(self) -> bool:
        """Function style whose items may be in flight several at once, or on the event
        loop: run by executor._runtime.pipeline, not one at a time in the job's thread."""
        return self.is_async or self.progdef.concurrency > 1

    def context(self) -> Context:
        """Return the function-style Context, calling ``init(ctx)`` the first time.

        The executor and the embedded runner call it at start-up (see :meth:`start`), so
        no job waits for ``init``.

        Raises:
            InitFailed: ``init`` raised; the message holds only the author's frames.
        """
        with self._lock:
            if self._context is None:
                context = Context(
                    progdef=self.progdef.name,
                    logger=logging.getLogger(f"dagyo.progdef.{self.progdef.name}"),
                    secrets=read_secrets(self.progdef),
                )
                if self.init is not None:
                    try:
                        started = self.init(context)
                        if inspect.isawaitable(started):  # async def init: on the loop
                            event_loop().run(_awaited(started))
                    except Exception as e:
                        raise InitFailed(self.progdef.name, self.progdef.context_dir, e) from e
                self._context = context
            return self._context

    def start(self) -> None:
        """Run ``init(ctx)`` now, when the progdef has one: before the executor is ready."""
        if self.init is not None:
            self.context()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def read_secrets(progdef: Progdef) -> dict[str, str]:
    """Return the progdef's declared secrets from the environment.

    Raises:
        DagyoError: naming the secret that is not set.
    """
    missing = [name for name in progdef.secrets if name not in os.environ]
    if missing:
        raise DagyoError(
            f"progdef {progdef.name}: secret {', '.join(missing)} is not set: export it in the "
            "executor's environment (in Kubernetes, the progdef's Secret)"
        )
    return {name: os.environ[name] for name in progdef.secrets}


def load_program(progdef: Progdef) -> Program:
    """Import the progdef's ``run`` (and ``init``) from its build context.

    The context folder is imported as a package of its own (``dagyo_progdef_<name>``), so
    every progdef can call its module ``main`` without clashing in one process.

    Raises:
        DagyoError: naming the progdef and the target when the import fails, or the
            progdef runs on another runtime.
    """
    if progdef.runtime != "python":
        raise DagyoError(
            f"progdef {progdef.name} runs on Node.js (runtime {progdef.runtime}): its executor "
            "is `node sdks/js/bin/dagyo-executor.js PROGDEF_DIR`, not `python -m executor`"
        )
    run = _resolve(progdef, progdef.run)
    init = _resolve(progdef, progdef.init) if progdef.init else None
    return Program(progdef, run=run, init=init)


def _resolve(progdef: Progdef, target: str) -> Callable[..., Any]:
    module_path, _, attribute = target.partition(":")
    package = _context_package(progdef)
    module = _import(progdef, f"{package}.{module_path}", module_path)
    function = getattr(module, attribute, None)
    if not callable(function):
        functions = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise DagyoError(
            f"progdef {progdef.name}: {target!r} names no function: define {attribute}() in "
            f"{module_path}{did_you_mean(attribute, functions)}"
        )
    return function  # type: ignore[no-any-return]


def check_code(catalogue: Mapping[str, Progdef]) -> list[str]:
    """Import each progdef's ``run`` (and ``init``) module and check it names the function,
    where the code is there: one problem a line, naming the progdef.json, with a
    did-you-mean. Each module is imported once, bounded by :func:`import_timeout_s`; it
    stays imported for the jobs that follow in this process.

    A progdef whose build context holds no Python module (a scheduler's catalogue without
    the code), or of another runtime, is not checked.
    """
    problems = []
    for progdef in catalogue.values():
        if progdef.runtime != "python" or not _has_code(progdef):
            continue  # a node progdef's export is checked where it is parsed
        try:
            load_program(progdef)
        except DagyoError as e:
            where = progdef.directory / "progdef.json" if progdef.directory else progdef.name
            problems.append(f"{where}: {e}")
    return problems


def _has_code(progdef: Progdef) -> bool:
    folder = progdef.context_dir
    return folder.is_dir() and any(
        path.suffix == ".py" or (path / "__init__.py").is_file() for path in folder.iterdir()
    )


def import_timeout_s() -> float:
    """How long one import of a progdef's module may take (DAGYO_IMPORT_TIMEOUT_S, 60 s)."""
    return env_number(os.environ, "DAGYO_IMPORT_TIMEOUT_S", IMPORT_TIMEOUT_S, float, above=0)


def _import(progdef: Progdef, name: str, module_path: str) -> Any:
    """Import a progdef's module, bounded by :func:`import_timeout_s`.

    The import runs on a daemon thread, so a module that hangs (a model download that
    never ends) is reported instead of leaving the executor silent before "ready".
    """
    timeout = import_timeout_s()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with own_modules(progdef):
                outcome["module"] = importlib.import_module(name)
        except BaseException as e:  # SystemExit and KeyboardInterrupt are the module's too
            outcome["error"] = e

    thread = threading.Thread(target=run, name=f"import {module_path}", daemon=True)
    thread.start()
    thread.join(timeout)
    where = f"progdef {progdef.name}: importing {module_path!r} from {progdef.context_dir}"
    if thread.is_alive():
        raise DagyoError(
            f"{where} did not finish within {timeout:g} s: remove the slow work from import "
            "time (do it in init), or raise DAGYO_IMPORT_TIMEOUT_S"
        )
    error = outcome.get("error")
    if isinstance(error, SystemExit):
        raise DagyoError(
            f"{where} called sys.exit({error.code}): a module must not exit when imported"
        )
    if error is not None:
        hint = ""
        if isinstance(error, ModuleNotFoundError) and error.name == name:
            hint = did_you_mean(module_path, _own_module_names(progdef.context_dir))
        raise DagyoError(
            f"progdef {progdef.name}: cannot import {module_path!r} from {progdef.context_dir}: "
            f"{type(error).__name__}: {error}{hint}"
        ) from error
    return outcome["module"]


@contextlib.contextmanager
def own_modules(progdef: Progdef) -> Iterator[None]:
    """Let a progdef's code ``import helpers`` for the ``helpers.py`` beside it.

    While its modules load, the progdef's folder is first on ``sys.path`` and the names
    of its own top-level modules are free in ``sys.modules``; afterwards both are put
    back. Its modules keep the ``helpers`` they imported, so two progdefs in one process
    (the embedded runner) each get their own. Import them at module level: a function
    that imports ``helpers`` when called runs after the folder has left ``sys.path``.
    """
    folder = progdef.context_dir.resolve()
    own = _own_module_names(folder)

    def is_own(module: str) -> bool:
        return module.partition(".")[0] in own

    hidden = {module: sys.modules.pop(module) for module in list(sys.modules) if is_own(module)}
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for module in [module for module in sys.modules if is_own(module)]:
            del sys.modules[module]
        sys.modules.update(hidden)


def _own_module_names(folder: Path) -> set[str]:
    """The top-level modules and packages of a progdef's folder."""
    return {
        path.stem if path.suffix == ".py" else path.name
        for path in folder.iterdir()
        if path.suffix == ".py" or (path / "__init__.py").is_file()
    }


def _context_package(progdef: Progdef) -> str:
    name = "dagyo_progdef_" + re.sub(r"\W", "_", progdef.name)
    context = str(progdef.context_dir)
    existing = sys.modules.get(name)
    if existing is not None and list(getattr(existing, "__path__", [])) == [context]:
        return name
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [context]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    for key in [k for k in sys.modules if k.startswith(name + ".")]:
        del sys.modules[key]  # a different folder under the same name: forget its modules
    return name
