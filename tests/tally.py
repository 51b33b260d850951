"""``tally``: a deterministic progdef whose handler leaves a side effect, to tell whether a
node ran or its results were replayed from the cache."""

from __future__ import annotations

# A deterministic progdef that writes each item it handles to the file DAGYO_TEST_TALLY:
# the side effect that tells whether it ran.
TALLY = {
    "name": "tally",
    "inputs": {"text": "dagyo.types.Text"},
    "outputs": {"upper": "dagyo.types.Text"},
    "run": "main:handler",
    "style": "function",
    "deterministic": True,
}
TALLY_CODE = """
import os

from executor.types import Text


def handler(ctx, item):
    with open(os.environ["DAGYO_TEST_TALLY"], "a") as tally:
        tally.write(item.text + "\\n")
    return Text(text=item.text.upper())
"""
