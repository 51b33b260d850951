"""Progdefs: the model (``model``), reading progdef.json (``parse``), and catalogues.

This package is shared by the executor and the scheduler; callers import from here, not
from its modules.
"""

from executor.core.progdef.catalogue import (
    Catalogue,
    Folders,
    LeftOut,
    catalogue_folders,
    find_progdef,
    load_catalogue,
    sample_catalogue,
)
from executor.core.progdef.model import (
    MAX_CONCURRENCY,
    MAX_JOBS_LIMIT,
    NAME,
    Progdef,
    Resources,
    Retries,
    Scaling,
    did_you_mean,
    is_type_variable,
)
from executor.core.progdef.node import RUNTIMES
from executor.core.progdef.parse import load_progdef, parse_progdef

__all__ = [
    "RUNTIMES",
    "MAX_CONCURRENCY",
    "MAX_JOBS_LIMIT",
    "NAME",
    "Catalogue",
    "Folders",
    "LeftOut",
    "Progdef",
    "Resources",
    "Retries",
    "Scaling",
    "catalogue_folders",
    "did_you_mean",
    "find_progdef",
    "is_type_variable",
    "load_catalogue",
    "load_progdef",
    "parse_progdef",
    "sample_catalogue",
]
