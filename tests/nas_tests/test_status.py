"""The progress file a job's page reads: a new phase is written at once, however soon after the
last write; rewrites within a phase are spaced; the last step of a phase is always written."""

from nas import status


def test_a_new_phase_is_written_at_once_and_steps_are_spaced(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    monkeypatch.setenv(status.ENV, str(path))
    monkeypatch.setattr(status, "_phase", {})
    monkeypatch.setattr(status, "_last_write", [0.0])
    status.report("trials", 1, 10, study="s")
    assert status.read(path).phase == "trials" and status.read(path).done == 1
    status.report("trials", 2, 10)  # within MIN_INTERVAL_S of the last write: not rewritten
    assert status.read(path).done == 1
    status.report("training", 0, 3)  # a new phase: written at once
    now = status.read(path)
    assert (now.phase, now.done, now.total) == ("training", 0, 3)
    status.report("training", 3, 3)  # the phase's last step: written at once
    last = status.read(path)
    assert last.done == 3 and last.eta_s() == 0.0
