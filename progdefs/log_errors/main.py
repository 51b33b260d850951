"""log_errors: logs each Error at WARNING as one JSON object, and discards it."""

import json

from executor import Job
from executor.errorport import item_value


def run(job: Job) -> None:
    """Log flow, node, error and item of every Error."""
    for error in job.inputs["errors"]:
        line = {
            "flow": job.flow_id,
            "node": error.node,
            "progdef": error.progdef,
            "error": error.error,
            "attempts": error.attempts,
            "item": item_value(error),
        }
        job.logger.warning("item error %s", json.dumps(line, ensure_ascii=False, sort_keys=True))
