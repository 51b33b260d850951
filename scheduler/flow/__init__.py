"""The flow model: parse Flow JSON, check it against a catalogue, plan its jobs, render it."""

from scheduler.flow.cache_key import cache_keys
from scheduler.flow.check import check_flow
from scheduler.flow.model import CheckedFlow, Flow
from scheduler.flow.parse import load_flow, parse_flow
from scheduler.flow.plan import Plan, plan_flow
from scheduler.flow.render import render_graph

__all__ = [
    "CheckedFlow",
    "Flow",
    "Plan",
    "cache_keys",
    "check_flow",
    "load_flow",
    "parse_flow",
    "plan_flow",
    "render_graph",
]
