"""unordered_cartesian_product: every (a, b) pair, emitted as soon as both are seen."""

from executor import Job
from executor.types import TextPair

BUFFER_LIMIT_BYTES = 10 * 1024 * 1024


def run(job: Job) -> None:
    """Pair each arriving item with every item seen so far on the other input.

    Raises:
        MemoryError: once the items kept for pairing exceed 10 MB.
    """
    seen: dict[str, list[str]] = {"a": [], "b": []}
    buffered = 0
    out = job.outputs["pairs"]
    for port, item in job.merge("a", "b"):
        text = item.text
        if port == "a":
            for b in seen["b"]:
                out.send(TextPair(a=text, b=b))
        else:
            for a in seen["a"]:
                out.send(TextPair(a=a, b=text))
        seen[port].append(text)
        buffered += len(text.encode()) + 49  # 49: what CPython keeps per short str
        if buffered > BUFFER_LIMIT_BYTES:
            raise MemoryError(
                f"buffered {buffered} bytes of items, past the 10 MB limit: "
                "feed fewer or shorter items"
            )
