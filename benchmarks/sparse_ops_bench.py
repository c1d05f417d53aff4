"""What does weight sparsity buy? Latency of a SparseLinear MLP (fc1 -> ReLU -> fc2) per pattern and
level, relative to the dense MLP of the same size, at the layer sizes the vit space uses.

    python benchmarks/sparse_ops_bench.py --backend ort --out benchmarks/results/sparse_ort_cpu.json
    python benchmarks/sparse_ops_bench.py --backend cuda --out benchmarks/results/sparse_cuda.json

ort:  ONNX Runtime on the CPU, 1 intra-op thread, batch of 1 image (N tokens).
cuda: torch on the GPU (bf16), CUDA-event timing, batch 1 and 64 images;
      N:M patterns are also run with torch's 2:4 semi-structured kernels where the shape allows.
Each case: median of 100 calls per round, 7 rounds interleaved across cases, median round.
Masked weights stay dense with zeros (what the exporter ships); structured sparsity removes hidden
units, so its MLP is physically smaller.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from nas.arch import kept, pattern_level  # noqa: E402
from search_spaces.sparse import sparsify_pair  # noqa: E402

SIZES = [(48, 192), (64, 256), (96, 384)]  # (embed_dim, MLP hidden) at mlp_ratio 4
TOKENS = [16, 49]  # patch 7 and patch 4 on 28x28 images
ROUNDS = 7  # every case is timed once per round, rounds interleaved; the median round counts
CASES = [("dense", 0.0), ("dense", 0.0), ("2:4", 0.5), ("4:8", 0.5)] + [
    (p, level) for p in ("unstructured", "block", "structured") for level in (0.5, 0.75, 0.9)
]


def mlp(dim: int, hidden: int, pattern: str, level: float) -> nn.Sequential:
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
    w1, b1, w2 = sparsify_pair(fc1.weight, fc1.bias, fc2.weight, pattern, level)
    model = nn.Sequential(nn.Linear(dim, w1.shape[0]), nn.ReLU(), nn.Linear(w1.shape[0], dim))
    with torch.no_grad():
        model[0].weight.copy_(w1), model[0].bias.copy_(b1), model[2].weight.copy_(w2)
        model[2].bias.copy_(fc2.bias)
    return model.eval()


def time_ort(model: nn.Module, tokens: int, dim: int, runs: int = 100) -> float:
    import io

    import numpy as np

    from latency_models.onnxruntime import OnnxRuntimeProfiler

    session = getattr(model, "ort_session", None)
    if session is None:  # one session per model, reused across rounds
        buffer = io.BytesIO()
        torch.onnx.export(model, (torch.rand(1, tokens, dim),), buffer, input_names=["x"], dynamo=False)
        session = model.ort_session = OnnxRuntimeProfiler().session(buffer.getvalue())
    feed = {"x": np.random.default_rng(0).random((1, tokens, dim), dtype=np.float32)}
    for _ in range(30):
        session.run(None, feed)
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def time_cuda(fn, x: torch.Tensor, runs: int = 100) -> float:
    for _ in range(30):
        fn(x)
    torch.cuda.synchronize()
    samples = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def semi_structured(model: nn.Sequential) -> nn.Sequential | str:
    """The MLP with torch's 2:4 semi-structured weights, or why that is not possible."""
    from torch.sparse import to_sparse_semi_structured

    try:
        for layer in (model[0], model[2]):
            layer.weight = nn.Parameter(to_sparse_semi_structured(layer.weight), requires_grad=False)
        return model
    except Exception as e:  # shape or dtype the kernels do not support
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def measure_size(backend: str, dim: int, hidden: int, tokens: int, batch: int) -> list[dict]:
    """Every case at one size, timed in interleaved rounds; ratios to the first dense copy.

    The second dense copy is a control: its ratio shows the noise floor of the comparison.
    """
    timers, rows = [], []
    for i, (pattern, level) in enumerate(CASES):
        assert pattern_level(pattern) in (None, level)
        model = mlp(dim, hidden, pattern, level)
        row = {
            "dim": dim,
            "hidden": hidden,
            "tokens": tokens,
            "batch": batch,
            "pattern": "dense (baseline)" if i == 0 else pattern,
            "level": level,
            "hidden_kept": kept(hidden, level) if pattern == "structured" else hidden,
        }
        if backend == "ort":
            timers.append({"ms": lambda m=model: time_ort(m, tokens, dim)})
        else:
            model = model.cuda().to(torch.bfloat16)
            x = torch.rand(batch * tokens, dim, device="cuda", dtype=torch.bfloat16)
            timer = {"ms": lambda m=model, x=x: time_cuda(m, x)}
            if pattern == "2:4":
                fast = semi_structured(mlp(dim, hidden, pattern, level).cuda().to(torch.bfloat16))
                if isinstance(fast, str):
                    row["semi_structured"] = fast
                else:
                    timer["semi_structured_ms"] = lambda m=fast, x=x: time_cuda(m, x)
            timers.append(timer)
        rows.append(row)
    samples = [{key: [] for key in timer} for timer in timers]
    with torch.inference_mode():
        for _ in range(ROUNDS):
            for timer, sample in zip(timers, samples):
                for key, fn in timer.items():
                    sample[key].append(fn())
    base = statistics.median(samples[0]["ms"])
    for row, sample in zip(rows, samples):
        row.update({key: statistics.median(values) for key, values in sample.items()})
        row["vs_dense"] = round(row["ms"] / base, 3)
        if "semi_structured_ms" in row:
            row["semi_structured_vs_dense"] = round(row["semi_structured_ms"] / base, 3)
        print(json.dumps(row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["ort", "cuda"], required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for dim, hidden in SIZES:
        for tokens in TOKENS:
            for batch in [1] if args.backend == "ort" else [1, 64]:
                rows += measure_size(args.backend, dim, hidden, tokens, batch)
    from nas.hardware import fingerprint

    result = {"backend": args.backend, "hardware": fingerprint(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
