"""Training over several processes: one per GPU (NCCL), or gloo processes on CPUs.

Why torchrun and torch.distributed rather than Ray Train: supernet training is one job of N
identical processes on one machine that must start together and stop together, which is what
torchrun (torch.distributed.run, torch's own elastic launcher) does with no cluster to set up;
Ray stays for what it is best at here, many independent trials (search workers, Tune). ``launch``
runs ``python -m torch.distributed.run --standalone --nproc-per-node=N -m nas.distributed SPEC``;
each process joins the group, takes GPU ``LOCAL_RANK`` and calls the function the spec names
with its ``Rank``. A process that dies takes the others with it (torchrun stops the group, and
every process dies with its parent), so a rerun resumes from the last checkpoint.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.errors import UserError
from nas.processes import die_with_parent


@dataclass(frozen=True)
class Rank:
    """This process's place in a distributed run."""

    rank: int
    world: int
    device: torch.device


class DistributedRunFailed(Exception):
    """A process of a distributed run failed (its own error is printed above this one)."""


def average_gradients(module: torch.nn.Module) -> None:
    """Average the gradients over all processes in one flat all-reduce: what DDP's reducer does,
    once per step, without its per-backward hooks (the sandwich rule runs several backward passes
    per step, some of them replayed CUDA graphs). Parameters without a gradient keep none: every
    process trains the same members, so they are the same ones everywhere, as in one process."""
    import torch.distributed as dist

    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat.div_(dist.get_world_size())
    for grad, averaged in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(averaged)


def launch(
    target: str, args: tuple, kwargs: dict[str, Any], processes: int, device: torch.device, spec: Path
) -> None:
    """Run ``target(*args, **kwargs, rank=Rank)`` (``"module:function"``) in ``processes``
    processes started by torchrun and wait for them. ``spec`` is where the arguments are handed
    over (written, then removed). SIGTERM / Ctrl-C stop the processes as they stop one process
    (they checkpoint); a failed process raises DistributedRunFailed."""
    if device.type == "cuda" and torch.cuda.device_count() < processes:
        raise UserError(
            f"supernet.devices: {processes} processes, one per GPU, but {torch.cuda.device_count()} "
            "GPU(s) are visible"
        )
    torch.save({"target": target, "args": args, "kwargs": kwargs, "device": str(device)}, spec)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a private rendezvous on a free local port
        f"--nproc-per-node={processes}",
        "--max-restarts=0",  # a failed process fails the run; the rerun resumes
        "-m",
        "nas.distributed",
        str(spec),
    ]
    package_root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = os.environ | {"PYTHONPATH": path, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    parent = os.getpid()
    agent = subprocess.Popen(command, env=env, preexec_fn=lambda: die_with_parent(parent))
    try:
        code = agent.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the processes checkpoint and stop
        agent.send_signal(signal.SIGTERM)
        agent.wait()
        raise
    finally:
        spec.unlink(missing_ok=True)
    if code != 0:
        raise DistributedRunFailed(
            f"distributed training in {processes} processes failed (exit {code}); rerun the same "
            "command to resume from its last checkpoint"
        )


def _rank(device: str) -> Rank:
    """Join the process group torchrun set up; one GPU per process on CUDA."""
    import torch.distributed as dist

    local, world, rank = (int(os.environ[k]) for k in ("LOCAL_RANK", "WORLD_SIZE", "RANK"))
    if torch.device(device).type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dev = torch.device("cpu")
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        dist.init_process_group("gloo")
    return Rank(rank, world, dev)


def main(spec_path: str) -> int:
    import torch.distributed as dist

    die_with_parent(os.getppid())  # the torchrun agent

    def terminate(signum, frame):  # as in the nas command: SIGTERM checkpoints like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    spec = torch.load(spec_path, weights_only=False)
    module, _, name = spec["target"].partition(":")
    function = getattr(importlib.import_module(module), name)
    rank = _rank(spec["device"])
    try:
        function(*spec["args"], **spec["kwargs"], rank=rank)
    except KeyboardInterrupt:
        return 130
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
