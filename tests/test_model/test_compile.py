"""torch.compile of the whole net: Dynamo captures forward and backward as one graph with no breaks, and a new input
size recompiles once (to dynamic shapes) and then no more. Dynamo alone (`backend="eager"`) decides graph breaks and
recompiles, so this runs in seconds on the CPU; GPU timings of the compiled step are in benchmarks/gpu_check.py."""
from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from model.net import A2UMatting


def test_the_net_compiles_as_one_graph_without_breaks_or_repeated_recompiles() -> None:
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    net = A2UMatting().train()
    compiled = torch.compile(net, backend="eager", fullgraph=True)  # any graph break raises
    for side in (64, 96, 128):
        compiled(torch.randn(2, 4, side, side)).mean().backward()
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])  # static first, then dynamic
    torch._dynamo.reset()
