"""Floor 0: general helpers every other floor may use (no torch, nothing of nas): atomic files,
SQL storage URLs and engines, machine-wide locks, child processes, user errors."""
