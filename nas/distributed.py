"""Training over several processes: one per GPU (NCCL), or gloo processes on CPUs.

Why torchrun and torch.distributed rather than Ray Train: supernet training is one job of N
identical processes on one machine that must start together and stop together, which is what
torchrun (torch.distributed.run, torch's own elastic launcher) does with no cluster to set up;
Ray stays for what it is best at here, many independent trials (search workers, Tune). ``launch``
runs ``python -m torch.distributed.run --standalone --nproc-per-node=N -m nas.distributed SPEC``
(SPEC: the function and its arguments, in a private temporary folder, authenticated with an
HMAC under a key only the processes get); each process joins the group, takes GPU
``LOCAL_RANK`` and calls the function the spec names with its ``Rank``. A process that dies
takes the others with it (torchrun stops the group, and every process dies with its parent), so
a rerun resumes from the last checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infra.errors import UserError
from infra.processes import die_with_parent

KEY_ENV = "NAS_DISTRIBUTED_KEY"  # the spec's HMAC key (hex), from the launcher to its children
DIGEST_SIZE = hashlib.sha256().digest_size


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


def write_spec(spec: dict[str, Any], path: Path, key: bytes) -> None:
    """``spec`` pickled into ``path`` (a new file, owner-only), after its HMAC-SHA256 under ``key``."""
    buffer = io.BytesIO()
    torch.save(spec, buffer)
    payload = buffer.getvalue()
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(hmac.new(key, payload, hashlib.sha256).digest() + payload)


def read_spec(path: str | Path, key: bytes) -> dict[str, Any]:
    """The spec ``write_spec`` wrote into ``path`` under ``key``. It holds arbitrary objects, so
    it is unpickled only once its HMAC proves that the launcher wrote it: anything else (no key,
    a missing or wrong HMAC, a changed byte) is a one-line UserError naming the file."""
    refused = f"distributed run spec {str(path)!r} was not written by this run's launcher"
    if not key:
        raise UserError(f"{refused}: no {KEY_ENV} in the environment (nas.distributed is started by launch)")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read distributed run spec {str(path)!r}: {e.strerror or e}") from None
    digest, payload = data[:DIGEST_SIZE], data[DIGEST_SIZE:]
    expected = hmac.new(key, payload, hashlib.sha256).digest()
    if len(data) <= DIGEST_SIZE or not hmac.compare_digest(digest, expected):
        raise UserError(f"{refused} (its HMAC does not match); refusing to unpickle it")
    return torch.load(io.BytesIO(payload), weights_only=False)  # authenticated: the launcher's own objects


def launch(target: str, args: tuple, kwargs: dict[str, Any], processes: int, device: torch.device) -> None:
    """Run ``target(*args, **kwargs, rank=Rank)`` (``"module:function"``) in ``processes``
    processes started by torchrun and wait for them. The arguments are handed over in a spec
    file in a private temporary folder (owner-only, removed afterwards), authenticated with an
    HMAC under a random key that only the children get (in their environment), so no other
    process can substitute it. SIGTERM / Ctrl-C stop the processes as they stop one process
    (they checkpoint); a failed process raises DistributedRunFailed."""
    if device.type == "cuda" and torch.cuda.device_count() < processes:
        raise UserError(
            f"supernet.devices: {processes} processes, one per GPU, but {torch.cuda.device_count()} "
            "GPU(s) are visible"
        )
    folder = Path(tempfile.mkdtemp(prefix="nas-distributed-"))  # mode 0700
    try:
        _run(folder, target, args, kwargs, processes, device)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(
    folder: Path, target: str, args: tuple, kwargs: dict[str, Any], processes: int, device: torch.device
) -> None:
    """``launch`` with the spec in ``folder``."""
    key = secrets.token_bytes(32)
    spec = folder / "spec.pt"
    write_spec({"target": target, "args": args, "kwargs": kwargs, "device": str(device)}, spec, key)
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
    env[KEY_ENV] = key.hex()
    parent = os.getpid()
    agent = subprocess.Popen(command, env=env, preexec_fn=lambda: die_with_parent(parent))
    try:
        code = agent.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the processes checkpoint and stop
        agent.send_signal(signal.SIGTERM)
        agent.wait()
        raise
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
    try:
        key = bytes.fromhex(os.environ.pop(KEY_ENV, ""))  # not handed on to this process's children
    except ValueError:  # not hex: no key
        key = b""
    spec = read_spec(spec_path, key)
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
    try:
        sys.exit(main(sys.argv[1]))
    except UserError as e:  # as the nas command: one line, exit code 2
        print(f"nas.distributed: error: {e}", file=sys.stderr)
        sys.exit(2)
