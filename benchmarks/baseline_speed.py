"""Why a timm baseline trains slowly on the GPU: steps/s of the retrain step (bf16 autocast, timm's
AdamW, grad clipping, model EMA) for each model, eager contiguous, eager channels-last and
torch.compile, plus the top CUDA kernels of the eager step by torch's profiler.

    python -m benchmarks.baseline_speed --models efficientformerv2_s0 deit_tiny_patch16_224 \\
        --image-size 28 --channels 1 --batch 512 --steps 40 --out speed.json

Random images stand in for data: the step's cost does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._harness import write_result


def _step_fn(model, batch: int, channels: int, size: int, classes: int, device: str):
    from timm.optim import create_optimizer_v2
    from timm.utils import ModelEmaV3

    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    ema = ModelEmaV3(model, decay=0.999)
    x = torch.rand(batch, channels, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    criterion = torch.nn.CrossEntropyLoss()

    def step(memory) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = criterion(model(x.contiguous(memory_format=memory)).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update(model)
        return loss

    return step


def _timed(step, memory, steps: int, device: str) -> float:
    for _ in range(3):  # warm-up (cuDNN autotuning, compilation)
        step(memory)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(memory)
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from types import SimpleNamespace

    from nas.training.baselines import timm_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = device == "cuda"
    data = SimpleNamespace(num_classes=args.classes, in_channels=args.channels, image_size=args.image_size)
    rows = {}

    def step_of(model):
        return _step_fn(model, args.batch, args.channels, args.image_size, args.classes, device)

    for name in args.models:
        row: dict = {}
        for variant, memory in (("eager", torch.contiguous_format), ("channels_last", torch.channels_last)):
            model = timm_model(name, data).to(device, memory_format=memory)
            row[variant] = round(_timed(step_of(model), memory, args.steps, device), 2)
        if device == "cuda":  # where the eager step's GPU time goes
            from torch.profiler import ProfilerActivity, profile

            model = timm_model(name, data).to(device)
            step = step_of(model)
            _timed(step, torch.contiguous_format, 3, device)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    step(torch.contiguous_format)
                torch.cuda.synchronize()
            kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
            top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:8]
            row["gpu_ms_per_step"] = round(sum(e.self_device_time_total for e in kernels) / 5e3, 2)
            row["kernels_per_step"] = sum(e.count for e in kernels) // 5
            row["top_kernels_ms_per_step"] = {
                e.key[:90]: round(e.self_device_time_total / 5e3, 2) for e in top
            }
        if args.compile:
            model = torch.compile(timm_model(name, data).to(device))
            t0 = time.perf_counter()
            try:
                row["compiled"] = round(
                    _timed(step_of(model), torch.contiguous_format, args.steps, device), 2
                )
                row["compile_s"] = round(time.perf_counter() - t0, 1)
            except Exception as e:  # a model torch.compile cannot take: say so, keep the rest
                row["compiled"] = f"failed: {str(e).splitlines()[0][:120]}"
        rows[name] = row
        print(name, row, flush=True)
    write_result(
        args.out, {"batch": args.batch, "image_size": args.image_size, "device": device, "models": rows}
    )


if __name__ == "__main__":
    main()
