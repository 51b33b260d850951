"""The cache of deterministic results (docs/cache.md): `dagyo run`'s folder and its part in
an embedded run."""

from scheduler.cache.folder import CacheSettings, Entry, FolderCache
from scheduler.cache.run import RunCache

__all__ = ["CacheSettings", "Entry", "FolderCache", "RunCache"]
