"""Trigger files for tests: a flow greeting an event's key, the triggers that start it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The flow the triggers start, the trigger of uploads, and a trigger of batches.
GREET_FLOW = {
    "name": "greet-key",
    "nodes": {"hi": {"progdef": "greet"}},
    "exports": {"greetings": "hi.greeting"},
}


UPLOAD = {
    "name": "on-upload",
    "flow": "greet-key.json",
    "match": {"type": "com.example.object.created", "source": "s3://photos*"},
    "set": {"hi.name": "$.data.key"},
}


BATCH_YAML = """
name: batched
flow: greet-key.json
match: {type: com.example.batch}
set: {hi.name: $.data.key}
batch: {max_events: 3, max_wait_s: 10}
"""


def write_triggers(folder: Path, **extra: dict[str, Any]) -> Path:
    """Write the greet flow, the on-upload and batched triggers, and ``extra`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "greet-key.json").write_text(json.dumps(GREET_FLOW))
    (folder / "on-upload.json").write_text(json.dumps(UPLOAD))
    (folder / "batched.yaml").write_text(BATCH_YAML)
    for name, trigger in extra.items():
        (folder / f"{name}.json").write_text(json.dumps(trigger))
    return folder
