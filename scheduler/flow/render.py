"""Drawing a checked flow as a Mermaid flowchart or a Graphviz DOT graph."""

from __future__ import annotations

import json

from scheduler.flow.model import CheckedFlow

# The formats render_graph draws (the choices of `dagyo run --graph`).
FORMATS = ("mermaid", "dot")


def render_graph(checked: CheckedFlow, fmt: str) -> str:
    """Return the flow drawn in ``fmt`` (``mermaid`` or ``dot``).

    Nodes show their progdef; edges show ports and the typename they carry; consts and
    exports are drawn as their own shapes.
    """
    flow = checked.flow
    lines: list[tuple[str, str, str, str]] = []  # (from id, to id, label, kind)
    boxes: dict[str, tuple[str, str]] = {}  # id -> (label, kind)
    for name, node in flow.nodes.items():
        boxes[f"node_{name}"] = (f"{name} ({node.progdef})", "node")
    for edge in flow.edges:
        typename = checked.port_types[(edge.source.node, "out", edge.source.port)]
        lines.append(
            (
                f"node_{edge.source.node}",
                f"node_{edge.target.node}",
                f"{edge.source.port} → {edge.target.port}: {typename}",
                "edge",
            )
        )
    for i, const in enumerate(flow.consts):
        values = ", ".join(json.dumps(v, separators=(",", ":")) for v in const.values)
        boxes[f"const_{i}"] = (f"const {values}", "const")
        lines.append((f"const_{i}", f"node_{const.target.node}", const.target.port, "const"))
    for export, source in flow.exports.items():
        boxes[f"export_{export}"] = (f"export {export}", "export")
        lines.append((f"node_{source.node}", f"export_{export}", source.port, "export"))
    return _mermaid(boxes, lines) if fmt == "mermaid" else _dot(flow.name, boxes, lines)


def _mermaid(boxes: dict[str, tuple[str, str]], lines: list[tuple[str, str, str, str]]) -> str:
    shapes = {"node": ('["', '"]'), "const": ('(["', '"])'), "export": ('[/"', '"/]')}
    out = ["flowchart LR"]
    for box_id, (label, kind) in boxes.items():
        left, right = shapes[kind]
        out.append(f"  {box_id}{left}{_quote(label)}{right}")
    for source, target, label, kind in lines:
        arrow = "-.->" if kind == "export" else "-->"
        out.append(f'  {source} {arrow}|"{_quote(label)}"| {target}')
    return "\n".join(out) + "\n"


def _dot(
    name: str, boxes: dict[str, tuple[str, str]], lines: list[tuple[str, str, str, str]]
) -> str:
    shapes = {"node": "box", "const": "note", "export": "cds"}
    out = [f"digraph {_dot_string(name)} {{", "  rankdir=LR;"]
    for box_id, (label, kind) in boxes.items():
        out.append(f"  {box_id} [shape={shapes[kind]}, label={_dot_string(label)}];")
    for source, target, label, kind in lines:
        style = ", style=dashed" if kind == "export" else ""
        out.append(f"  {source} -> {target} [label={_dot_string(label)}{style}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # DOT reads UTF-8 and JSON's escapes


def _quote(text: str) -> str:
    return text.replace('"', "#quot;")
