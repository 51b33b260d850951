"""What a flow's consts may cost: bounded per flow in the flow model, and per flow and per
node by quotas with defaults, all refused before any value is encoded."""

from __future__ import annotations

import json

import grpc
import pytest

from executor.core.errors import FlowInvalid
from scheduler.flow.model import MAX_FLOW_CONST_VALUES
from scheduler.flow.parse import parse_flow
from scheduler.service.auth import (
    DEFAULT_MAX_CONST_VALUES,
    DEFAULT_MAX_NODE_CONST_VALUES,
    Quotas,
    parse_tokens,
    token_digest,
    tokens_json,
)
from tests.scheduler.fake_executor import Client


def with_values(count: int, *, nodes: int = 1) -> dict:
    """``count`` const values spread over ``nodes`` emit nodes; none of them an Int64, so
    a refusal for their number shows that none was encoded."""
    names = [f"e{i}" for i in range(nodes)]
    share = [count // nodes + (1 if i < count % nodes else 0) for i in range(nodes)]
    return {
        "name": "many",
        "nodes": {name: {"progdef": "emit"} for name in names},
        "consts": [
            {"to": f"{n}.n", "values": ["x"] * k} for n, k in zip(names, share, strict=True)
        ],
        "exports": {n: f"{n}.items" for n in names},
    }


def test_a_flow_past_the_model_bound_on_const_values_is_refused_before_encoding() -> None:
    with pytest.raises(FlowInvalid) as caught:
        parse_flow(json.dumps(with_values(MAX_FLOW_CONST_VALUES + 1, nodes=20)))
    (line,) = caught.value.problems
    assert f"the flow has {MAX_FLOW_CONST_VALUES + 1} const values, more than the" in line


def test_the_default_quotas_bound_const_values_per_flow_and_per_node(client: Client) -> None:
    assert Quotas().max_const_values == DEFAULT_MAX_CONST_VALUES
    assert Quotas().max_node_const_values == DEFAULT_MAX_NODE_CONST_VALUES
    per_node = DEFAULT_MAX_NODE_CONST_VALUES + 1
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(with_values(per_node))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == (
        f"quota max_node_const_values is {DEFAULT_MAX_NODE_CONST_VALUES} for this token; "
        f"node e0 is fed {per_node} const values"
    )
    per_flow = DEFAULT_MAX_CONST_VALUES + 1
    nodes = per_flow // DEFAULT_MAX_NODE_CONST_VALUES + 1
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(with_values(per_flow, nodes=nodes))
    assert caught.value.details() == (
        f"quota max_const_values is {DEFAULT_MAX_CONST_VALUES} for this token; "
        f"the flow has {per_flow} const values"
    )


def test_a_token_may_raise_or_lower_the_const_quotas() -> None:
    text = (
        "tokens:\n"
        f"  - sha256: {token_digest('a')}\n"
        "    tenant: team-a\n"
        "    quotas: {max_const_values: 5, max_node_const_values: 2}\n"
    )
    (principal,) = parse_tokens(text, source="tokens.yaml").values()
    assert (principal.quotas.max_const_values, principal.quotas.max_node_const_values) == (5, 2)
    assert json.loads(tokens_json({"x": principal}))
