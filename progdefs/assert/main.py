"""assert: panics the flow at the first Error, carrying the failed node, error and item."""

import json

from executor import Job
from executor.errorport import item_value


class ItemFailed(Exception):
    """An item failed upstream and the flow asserted that none would."""


def run(job: Job) -> None:
    """Panic at the first Error; a stream without any ends normally."""
    for error in job.inputs["errors"]:
        item = json.dumps(item_value(error), ensure_ascii=False, sort_keys=True)
        raise ItemFailed(
            f"{error.node} ({error.progdef}) failed on item {item} after "
            f"{error.attempts} attempt(s): {error.error}\n{error.traceback}"
        )
