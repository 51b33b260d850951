"""The suite's own check: ``breakages.py`` names cases that exist, and a broken executor
fails them (one break run here; ``python -m tests.conformance.breakages`` runs them all)."""

from __future__ import annotations

import importlib
import re

from tests.conformance.breakages import CASES, passed_under


def test_every_case_a_break_names_exists() -> None:
    for break_name, cases in CASES.items():
        for case in cases:
            path, _, rest = case.partition("::")
            module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
            if not rest:
                continue
            match = re.fullmatch(r"(\w+)(?:\[(.*)\])?", rest)
            assert match, f"{break_name}: {case} is no test id"
            test = getattr(module, match[1], None)
            assert test is not None, f"{break_name}: no test {case}"
            if match[2] is not None:
                ids = [
                    str(value)
                    for mark in getattr(test, "pytestmark", [])
                    if mark.name == "parametrize"
                    for value in mark.args[1]
                ]
                assert match[2] in ids, f"{break_name}: {case} is not one of {ids}"


def test_an_executor_skipping_the_seq_check_fails_the_seq_cases() -> None:
    assert passed_under("seq") == []
