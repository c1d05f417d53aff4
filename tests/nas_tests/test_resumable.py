"""The resumable loop both trainings share (nas.resumable): an interrupted run resumes at the
step it saved and ends with the weights of an uninterrupted one, the epoch order and step seeds
follow the seed-stride scheme, checkpoints are written atomically (and by the writing process
only), and a loss that is not finite stops the training in one line and deletes the partial
checkpoint. (The kill tests of test_supernet_training.py and test_training.py run the same
through ``nas search`` and ``nas train`` in subprocesses.)"""

from __future__ import annotations

import pytest
import torch

import nas.checkpoint
from infra.errors import UserError
from nas.checkpoint import load_checkpoint
from nas.resumable import EPOCH_SEED_STRIDE, STEP_SEED_STRIDE, ResumableLoop

SEED, STEPS_PER_EPOCH, EPOCHS, BATCH = 3, 4, 3, 5
INDICES = torch.arange(20)
TOTAL = STEPS_PER_EPOCH * EPOCHS


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def _run(partial, stop_at: int | None = None, every_s: float = 1e9):
    """Train a tiny model through the loop, as the trainings do (seeded per epoch and step);
    raise KeyboardInterrupt after ``stop_at`` steps. Returns the loop, the model and what each
    step saw: (step, epoch, its batch, its seed)."""
    model, optimizer = _model_and_optimizer()
    loop = ResumableLoop(
        partial, {"model": model, "optimizer": optimizer}, SEED, STEPS_PER_EPOCH, TOTAL, every_s
    )
    loop.resume("cpu")
    seen = []
    features = torch.randn(len(INDICES), 4, generator=torch.Generator().manual_seed(1))
    with loop.running():
        for epoch, batch_indices in loop.epochs(INDICES, BATCH):
            for batch in batch_indices.view(-1, BATCH):
                noise = torch.randn(BATCH, 4, generator=torch.Generator().manual_seed(loop.step_seed()))
                loss = model(features[batch] + noise).square().mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                seen.append((loop.step, epoch, batch.tolist(), loop.step_seed()))
                loop.step += 1
                if loop.reads_loss():
                    loop.checked(loss.detach(), "test", "lower test.lr")
                if stop_at is not None and loop.step == stop_at:
                    raise KeyboardInterrupt
                loop.save_when_due()
    return loop, model, seen


def test_the_schedule_is_the_seed_stride_scheme(tmp_path):
    """Epoch e visits the indices in the order of a generator seeded (seed, e) only; step s's
    draws come from seed * STEP_SEED_STRIDE + s (what earlier supernets and runs were made with)."""
    _, _, seen = _run(tmp_path / "checkpoint.pt")
    assert len(seen) == TOTAL
    for step, epoch, batch, seed in seen:
        order = INDICES[
            torch.randperm(
                len(INDICES), generator=torch.Generator().manual_seed(SEED * EPOCH_SEED_STRIDE + epoch)
            )
        ]
        index = step % STEPS_PER_EPOCH
        assert epoch == step // STEPS_PER_EPOCH
        assert batch == order[index * BATCH : (index + 1) * BATCH].tolist()
        assert seed == SEED * STEP_SEED_STRIDE + step


def test_an_interrupted_loop_saves_and_resumes_where_it_stopped(tmp_path):
    _, expected, seen_alone = _run(tmp_path / "alone.pt")
    partial = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(partial, stop_at=6)  # mid-epoch: step 6 of 12, epoch 1
    saved = load_checkpoint(partial, keys=("model", "optimizer", "step", "elapsed_s"))
    assert saved["step"] == 6 and saved["elapsed_s"] >= 0
    loop, model, seen = _run(partial)
    assert loop.resumed and loop.first_step == 6 and loop.step == TOTAL
    assert seen == seen_alone[6:]  # the same batches and seeds from the saved step on
    for name, tensor in expected.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    loop.finished()
    assert not partial.exists()


def test_checkpoints_are_atomic_and_written_by_the_writer_only(tmp_path, monkeypatch):
    partial = tmp_path / "checkpoint.pt"
    loop, _, _ = _run(partial, every_s=0)  # every step: the last save is of step TOTAL - 1
    assert load_checkpoint(partial)["step"] == TOTAL - 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left

    def fails_halfway(obj, path):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(nas.checkpoint.torch, "save", fails_halfway)
    with pytest.raises(OSError, match="disk full"):
        loop.save()
    assert load_checkpoint(partial)["step"] == TOTAL - 1  # the previous checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    monkeypatch.undo()

    model, optimizer = _model_and_optimizer()
    other = tmp_path / "other.pt"
    reader = ResumableLoop(other, {"model": model, "optimizer": optimizer}, SEED, 4, 12, 0, writer=False)
    with reader.running():
        reader.save()
    assert not other.exists()


def test_a_diverged_loss_is_one_line_and_deletes_the_partial_checkpoint(tmp_path):
    partial = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(partial, stop_at=4)
    assert partial.exists()
    model, optimizer = _model_and_optimizer()
    loop = ResumableLoop(partial, {"model": model, "optimizer": optimizer}, SEED, STEPS_PER_EPOCH, TOTAL)
    assert loop.resume() and loop.step == 4
    assert loop.checked(torch.tensor(0.5), "test", "lower test.lr") == 0.5
    with pytest.raises(UserError) as e:
        loop.checked(torch.tensor(float("nan")), "test", "lower test.lr (now 1)")
    assert str(e.value) == "test: training diverged (loss nan) by step 4 of 12; lower test.lr (now 1)"
    assert not partial.exists()


def test_a_checkpoint_without_the_loops_state_is_refused_before_any_step(tmp_path):
    partial = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "step": 3}, partial)
    model, optimizer = _model_and_optimizer()
    loop = ResumableLoop(partial, {"model": model, "optimizer": optimizer}, SEED, STEPS_PER_EPOCH, TOTAL)
    with pytest.raises(UserError, match="no optimizer, elapsed_s"):
        loop.resume()
    assert loop.step == 0 and not loop.resumed


def test_an_update_with_non_finite_gradients_is_skipped_and_many_in_a_row_diverge(tmp_path):
    from nas.resumable import MAX_SKIPPED_STEPS

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.1)
    partial = tmp_path / "checkpoint.pt"
    loop = ResumableLoop(partial, {"model": net}, seed=0, steps_per_epoch=1, total=100)
    before = [p.detach().clone() for p in net.parameters()]

    def backward(overflow: bool) -> None:
        optimizer.zero_grad()
        net(torch.randn(16, 4)).sum().backward()
        if overflow:  # one overflowed entry, as bf16 can give
            next(net.parameters()).grad[0, 0] = float("inf")

    backward(overflow=True)
    assert loop.clipped_step(net, optimizer, "supernet", "lower it") is False
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))
    assert not optimizer.state  # never stepped: its moments hold no inf/NaN
    backward(overflow=False)
    assert loop.clipped_step(net, optimizer, "supernet", "lower it") is True
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert not all(torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))
    assert loop.skipped_steps == 1

    partial.write_bytes(b"partial")  # a divergence deletes the partial checkpoint
    for _ in range(MAX_SKIPPED_STEPS - 1):
        backward(overflow=True)
        assert loop.clipped_step(net, optimizer, "supernet", "lower it") is False
    backward(overflow=True)
    with pytest.raises(UserError, match=r"supernet: training diverged \(20 steps in a row.*lower it"):
        loop.clipped_step(net, optimizer, "supernet", "lower it")
    assert not partial.exists()
