"""Measured latency of the PyTorch model itself: CUDA events on a GPU (wall clock on CPU),
optionally through ``torch.compile`` and with torch's 2:4 semi-structured kernels for N:M layers.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from infra.locks import computing, measuring
from latency_models._base import LatencyResult, register_profiler
from latency_models._timing import ModuleProfiler, pinned, quiet_measurement, resolve_cpu, time_calls
from latency_models.hardware import device_lock
from search_spaces.sparse import semi_structured_weights

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@register_profiler("torch")
class TorchProfiler(ModuleProfiler):
    """``device=cuda`` times with CUDA events, one synchronised forward pass at a time (latency,
    not throughput); ``device=cpu`` with the wall clock.

    On CUDA the forward pass is captured once as a CUDA graph and replayed (``cuda_graph``):
    at ViT sizes eager PyTorch is bound by Python's kernel launches, whose speed wanders with
    the host CPU (CV of 5 medians 11-22 % on an H100), while replay times the kernels themselves,
    as a deployed engine (TensorRT, ORT's CUDA graphs) runs them. ``cuda_graph=false`` measures
    eager PyTorch, launches included. Warm-up lasts at least ``warmup_seconds`` so GPU clocks
    have left idle.

    ``semi_structured=true`` gives the 2:4 layers torch's sparse semi-structured weights (CUDA,
    bfloat16/float16 only); whether they are faster is for this profiler to find out.
    """

    name = "torch"
    unit = "ms"
    measured = True

    def __init__(
        self,
        device: str = "cuda",
        dtype: str = "float32",
        compile: bool = False,
        semi_structured: bool = False,
        batch_size: int = 1,
        image_size: int | None = None,
        warmup: int = 20,
        runs: int = 100,
        rounds: int = 5,
        threads: int = 1,
        pin_cpu: int | str | None = "auto",
        cuda_graph: bool = True,
        warmup_seconds: float = 0.2,
    ) -> None:
        if batch_size < 1 or warmup < 0 or runs < 1 or threads < 1 or rounds < 1 or warmup_seconds < 0:
            raise ValueError(
                "profiler: batch_size, runs, threads, rounds >= 1 and warmup, warmup_seconds >= 0"
            )
        if dtype not in DTYPES:
            raise ValueError(f"profiler.dtype: {dtype!r} is not one of {list(DTYPES)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"profiler.device: {device!r} but torch sees no CUDA device here")
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"profiler.device: expected cpu or cuda[:N], got {device!r}")
        if semi_structured and (device == "cpu" or dtype == "float32"):
            raise ValueError("profiler.semi_structured: needs device=cuda and dtype bfloat16 or float16")
        self.device, self.dtype, self.compile = device, dtype, compile
        self.semi_structured, self.batch_size, self.image_size = semi_structured, batch_size, image_size
        self.warmup, self.runs, self.threads, self.pin_cpu = warmup, runs, threads, pin_cpu
        self.rounds = min(rounds, runs)
        self.cuda_graph, self.warmup_seconds = cuda_graph and device != "cpu", warmup_seconds
        self._cpu = resolve_cpu(pin_cpu) if threads == 1 else None  # on CUDA: the launching thread

    def settings(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "compile": self.compile,
            "semi_structured": self.semi_structured,
            "batch_size": self.batch_size,
            "image_size": self.image_size,
            "warmup": self.warmup,
            "runs": self.runs,
            "rounds": self.rounds,
            "threads": self.threads,
            "pin_cpu": self.pin_cpu,
            "cuda_graph": self.cuda_graph,
            "warmup_seconds": self.warmup_seconds if self.device != "cpu" else 0,
        }

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as it will run: on the device, in the dtype, sparse kernels, compiled."""
        import copy

        model = copy.deepcopy(model).eval().to(self.device, DTYPES[self.dtype])
        if self.semi_structured:
            model = semi_structured_weights(model)
        if self.compile:
            model = torch.compile(model)
        return model

    @torch.inference_mode()
    def measure_module(self, model: torch.nn.Module, input_shape: tuple[int, ...]) -> LatencyResult:

        with computing():  # copying to the device, sparse conversion: never beside a measurement
            run = self.prepare(model)
        x = torch.rand(self.batch_size, *input_shape, device=self.device, dtype=DTYPES[self.dtype])
        with measuring(device_lock(self.device)):  # a GPU's own lock: other GPUs' work goes on
            return self._measure(run, x, input_shape)

    def _measure(self, run, x: torch.Tensor, input_shape: tuple[int, ...]) -> LatencyResult:
        if self.device == "cpu":
            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with pinned(self._cpu):
                    rounds, load, quiet = quiet_measurement(
                        lambda: time_calls(lambda: run(x), self.warmup, self.runs, self.rounds),
                        0.25,
                        3,
                        self._cpu,
                    )
            finally:
                torch.set_num_threads(threads)
            return LatencyResult.from_rounds(
                rounds,
                unit="ms",
                n_warmup=self.warmup,
                batch_size=self.batch_size,
                input_shape=input_shape,
                background_load=round(load.near, 3),
                machine_load=round(load.machine, 3),
                quiet=quiet,
            )
        else:
            with pinned(self._cpu), torch.cuda.device(x.device):
                timed = self._cuda_timed_call(run, x)
                deadline, done = time.perf_counter() + self.warmup_seconds, 0
                while done < self.warmup or time.perf_counter() < deadline:
                    timed()
                    done += 1
                rounds = time_calls(timed, 0, self.runs, self.rounds, timed=True)
        return LatencyResult.from_rounds(
            rounds, unit="ms", n_warmup=self.warmup, batch_size=self.batch_size, input_shape=input_shape
        )

    def _cuda_timed_call(self, run, x: torch.Tensor):
        """A call that runs one forward pass (a graph replay, or eager) and returns its ms."""
        forward = lambda: run(x)  # noqa: E731
        if self.cuda_graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # capture needs the lazy work (cuBLAS handles, compile) done
                for _ in range(3):
                    run(x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    run(x)
            except RuntimeError as error:
                raise ValueError(
                    f"profiler.cuda_graph: this model cannot be captured as a CUDA graph ({error}); "
                    "set profiler.cuda_graph=false"
                ) from error
            forward = graph.replay
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def timed() -> float:
            start.record()
            forward()
            end.record()
            end.synchronize()  # one call at a time: latency, not throughput
            return start.elapsed_time(end)

        return timed
