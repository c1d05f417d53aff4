"""A training loop of a fixed number of steps that survives a kill and repeats itself exactly.

Both trainings use it: the supernet's (``nas.supernet_training``) and the stand-alone one of
``nas train`` (``nas.training.loop``). ``ResumableLoop`` owns what they share:

* the step counter and the schedule: epoch ``e`` visits the training indices in the order of a
  generator seeded by ``(seed, e)`` only, and step ``s`` draws its augmentation (and a supernet
  its members) from generators seeded by ``(seed, s)``, so a rerun and a resumed run see the
  same batches and the same random numbers, bit for bit;
* the partial checkpoint: the states of the loop's objects (model, optimizer, EMA) with the
  step and the training seconds so far, written atomically every ``every_s`` seconds and on
  Ctrl-C, read back on start through ``nas.checkpoint.load_checkpoint`` (``weights_only``);
* the divergence check: a loss that is not finite deletes the partial checkpoint (resuming it
  would diverge again) and is a one-line UserError saying what to lower; ``clipped_step`` skips
  an update whose gradients are not finite (AMP's rule) and counts it, and
  ``MAX_SKIPPED_STEPS`` in a row are that divergence.

Lifecycle: build the objects, ``ResumableLoop(...)``, ``resume(map_location)``, then inside
``with loop.running():`` iterate ``loop.epochs(indices, batch_size)``, take each step's seed
from ``step_seed()``, count it with ``loop.step += 1``, read the loss where ``reads_loss()``
(``checked(loss, ...)``) and call ``save_when_due()``; once the result is written,
``finished()`` removes the partial checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from infra.errors import UserError
from nas.checkpoint import load_checkpoint, save_atomic

# Per-epoch data order and per-step random draws are seeded from (recipe seed, epoch / step): a
# rerun or a resumed run repeats them exactly. The strides (primes larger than any epoch or step
# count) keep the streams of different recipe seeds apart.
EPOCH_SEED_STRIDE = 100_003
STEP_SEED_STRIDE = 1_000_003
PROGRESS_EVERY = 50  # steps between loss reads (each waits for the GPU) and progress updates
MAX_SKIPPED_STEPS = 20  # updates in a row with non-finite gradients that count as a divergence


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of everything drawn once per ``epoch`` (its data order)."""
    return seed * EPOCH_SEED_STRIDE + epoch


def step_seed(seed: int, step: int) -> int:
    """The seed of everything drawn in ``step`` (augmentation, supernet members, Mixup)."""
    return seed * STEP_SEED_STRIDE + step


class Stateful(Protocol):
    """What a checkpoint holds the state of: a module, an optimizer, a model EMA."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class ResumableLoop:
    """``total`` steps of ``steps_per_epoch`` each epoch, checkpointed to ``partial``.

    ``state`` names the objects whose ``state_dict()`` the checkpoint holds (their order is the
    order they are restored in); ``writer`` is False in the processes of a distributed run that
    do not write (every process holds the same state)."""

    partial: Path
    state: dict[str, Stateful]
    seed: int
    steps_per_epoch: int
    total: int
    every_s: float = 30.0
    writer: bool = True
    step: int = 0  # steps done, this run and the ones it resumed
    elapsed_s: float = 0.0  # training seconds of the runs it resumed
    resumed: bool = False
    first_step: int = 0  # where this run started
    skipped_steps: int = 0  # updates skipped for non-finite gradients (this run)
    _skipped_in_a_row: int = field(default=0, repr=False)
    _started: float = field(default=0.0, repr=False)
    _last_save: float = field(default=0.0, repr=False)

    def resume(self, map_location: str | torch.device = "cpu") -> bool:
        """Restore the objects, the step and the seconds from the partial checkpoint, if there is
        one (a file that is not one is a one-line UserError naming it, before any step)."""
        if not self.partial.exists():
            return False
        keys = (*self.state, "step", "elapsed_s")
        saved = load_checkpoint(self.partial, map_location, keys=keys)
        for name, obj in self.state.items():
            obj.load_state_dict(saved[name])
        self.step, self.elapsed_s, self.resumed = saved["step"], saved["elapsed_s"], True
        self.first_step = self.step
        return True

    @contextlib.contextmanager
    def running(self) -> Iterator[ResumableLoop]:
        """The training's clock runs from here; Ctrl-C inside saves first (a kill loses at most
        ``every_s`` seconds)."""
        self._started = self._last_save = time.perf_counter()
        self.first_step = self.step
        try:
            yield self
        except KeyboardInterrupt:
            self.save()
            raise

    def epochs(self, indices: torch.Tensor, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(epoch, its indices still to visit)`` until ``total`` steps are done: the epoch's
        seeded order of ``indices`` from the current step on (whole batches only). The caller
        counts the steps it takes (``step += 1``)."""
        while self.step < self.total:
            epoch, index = divmod(self.step, self.steps_per_epoch)
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            order = indices[torch.randperm(len(indices), generator=generator)]
            yield epoch, order[index * batch_size : self.steps_per_epoch * batch_size]

    def step_seed(self) -> int:
        """The seed of the current step's random draws."""
        return step_seed(self.seed, self.step)

    def reads_loss(self) -> bool:
        """Whether the loss is read after this step (every ``PROGRESS_EVERY`` and at the end)."""
        return self.step % PROGRESS_EVERY == 0 or self.step == self.total

    def checked(self, loss: torch.Tensor, group: str, advice: str) -> float:
        """``loss`` as a number; not finite: the partial checkpoint is deleted and the training
        stops now (not after its remaining steps) with one line naming ``group`` and ``advice``."""
        value = loss.item()
        if not math.isfinite(value):
            self._diverged(f"loss {value}", group, advice)
        return value

    def _diverged(self, what: str, group: str, advice: str) -> None:
        self.partial.unlink(missing_ok=True)
        raise UserError(f"{group}: training diverged ({what}) by step {self.step} of {self.total}; {advice}")

    def clipped_step(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, group: str, advice: str
    ) -> bool:
        """Clip the gradients to norm 1 and step, unless their norm is not finite: one overflow
        (bf16) would turn every weight into NaN, so that update is skipped, as AMP's GradScaler
        does (reading the norm waits for the device). ``MAX_SKIPPED_STEPS`` in a row: the
        divergence error. True: the optimizer stepped."""
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        if torch.isfinite(norm):
            optimizer.step()
            self._skipped_in_a_row = 0
            return True
        if not self.skipped_steps and self.writer:
            print(f"{group}: step {self.step} skipped (non-finite gradients)", file=sys.stderr)
        self.skipped_steps += 1
        self._skipped_in_a_row += 1
        if self._skipped_in_a_row >= MAX_SKIPPED_STEPS:
            self._diverged(f"{MAX_SKIPPED_STEPS} steps in a row with non-finite gradients", group, advice)
        return False

    def save(self) -> None:
        """The partial checkpoint, atomically (a reader never sees half a file)."""
        self._last_save = time.perf_counter()
        if not self.writer:
            return
        state: dict[str, Any] = {name: obj.state_dict() for name, obj in self.state.items()}
        save_atomic(state | {"step": self.step, "elapsed_s": self.elapsed_s + self.seconds()}, self.partial)

    def save_when_due(self) -> None:
        """Save when ``every_s`` seconds passed since the last save (never after the last step:
        the result follows)."""
        if time.perf_counter() - self._last_save > self.every_s and self.step < self.total:
            self.save()

    def seconds(self) -> float:
        """Seconds this run has trained so far."""
        return time.perf_counter() - self._started

    def finished(self) -> None:
        """The result is written: the partial checkpoint goes."""
        self.partial.unlink(missing_ok=True)
