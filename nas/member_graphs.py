"""Each supernet member's forward + backward captured once as a CUDA graph and replayed
(``supernet.cuda_graphs``): on a GPU, launching a small member's hundreds of kernels one by one
from Python is what a training step costs, not running them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from search_spaces.arch import Arch
from search_spaces.supernet import Supernet


class _Member(torch.nn.Module):
    """One member of the supernet as a module of its own (its parameters: all shared ones), so
    that torch.cuda.make_graphed_callables can capture its forward and backward."""

    def __init__(self, net: Supernet, arch: Arch) -> None:
        super().__init__()
        self.net, self.arch = net, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):  # graphs: no cache
            return self.net(x, self.arch).float()


class MemberGraphs:
    """Each member's forward + backward captured once as CUDA graphs and replayed: a member of a
    small supernet launches hundreds to thousands of small kernels, and launching them one by one
    from Python, not running them, is what a training step costs on a GPU. Each graph has its own
    memory pool (members replay in any order, so pools cannot be shared): a member is graphed only
    while the GPU keeps room for twice the largest pool seen so far and ``reserve`` of its memory;
    the others run eagerly (a large space at a large batch graphs fewer members)."""

    def __init__(self, reserve: float = 0.2) -> None:
        self.graphed: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        self.reserve, self.largest_pool = reserve, 0

    def capture(self, net: Supernet, archs: list[Arch], x: torch.Tensor) -> None:
        """Graphs for ``archs`` (a batch like ``x``), releasing any others. Call it before a
        step's first forward: a capture must not overlap a live autograd graph of the same
        parameters. Capturing runs each new member's forward and backward a few times without
        touching the gradients (BatchNorm statistics do see those batches)."""
        wanted = {arch.key(): arch for arch in archs}
        for key in [k for k in self.graphed if k not in wanted]:
            del self.graphed[key]
        for key, arch in wanted.items():
            if key in self.graphed:
                continue
            free, total = torch.cuda.mem_get_info(x.device)
            if free < 2 * self.largest_pool + self.reserve * total:
                continue  # runs eagerly
            before = torch.cuda.memory_reserved(x.device)
            self.graphed[key] = torch.cuda.make_graphed_callables(
                _Member(net, arch), (x,), allow_unused_input=True
            )
            self.largest_pool = max(self.largest_pool, torch.cuda.memory_reserved(x.device) - before)

    def get(self, arch: Arch) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return self.graphed.get(arch.key())
