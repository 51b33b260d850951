"""The answer of the Catalogue call: the progdefs a caller may use, with their types.

The caller's view comes in already cut to its tenant (``visible_catalogue``): the answer
names no progdef outside it, no type only such a progdef uses, and no file only such a
progdef brought. ``dagyo progdefs --remote`` and ``dagyo types --remote`` print from it
exactly what they print from a catalogue folder.
"""

from __future__ import annotations

import json

from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from executor.progdef import Catalogue, Progdef
from executor.registry import descriptor_set
from scheduler.flow.typedocs import catalogue_typenames, describe_type, json_schema


def catalogue_answer(catalogue: Catalogue) -> pb.CatalogueResponse:
    """The CatalogueResponse of a caller's view of the catalogue."""
    typenames = catalogue_typenames(catalogue)
    types = []
    for typename in typenames:
        info = describe_type(typename, catalogue)
        types.append(
            pb.CatalogueType(
                typename=typename,
                source=info["source"],
                doc=info["doc"],
                fields=[pb.TypeField(**field) for field in info["fields"]],
                used_by=info["used_by"],
                json_schema=json.dumps(json_schema(typename)),
            )
        )
    return pb.CatalogueResponse(
        progdefs=[_progdef(progdef) for progdef in catalogue.values()],
        types=types,
        descriptor_set=descriptor_set(typenames),
        left_out=[
            pb.LeftOutProgdef(progdef=left.name, problems=left.problems)
            for left in catalogue.left_out.values()
        ],
    )


def _progdef(progdef: Progdef) -> pb.CatalogueProgdef:
    return pb.CatalogueProgdef(
        name=progdef.name,
        description=progdef.description,
        version=progdef.version,
        inputs=[pb.Port(name=name, type=type_) for name, type_ in progdef.inputs.items()],
        outputs=[pb.Port(name=name, type=type_) for name, type_ in progdef.outputs.items()],
        style=progdef.style,
        errors=progdef.errors,
    )
