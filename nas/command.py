"""What a ``nas`` subcommand is, for the commands of every floor: ours in nas.cli, and those of
the floors above (the service's ``nas serve`` / ``nas token``, web.commands), which register
as entry points of group ``ENTRY_POINTS`` (pyproject.toml) so the floors below never import
them. Light: the service imports it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ENTRY_POINTS = "nas.commands"


@dataclass(frozen=True)
class Command:
    """``run(cfg, config_dirs, console[, action])`` returns the exit code; ``actions`` are the
    command's verbs (``nas latency fit|eval``), none for most. ``own_args``: a command that reads
    its arguments itself (``nas agent``, which also runs where only its torch-free package is
    installed): ``run(args)``, with no config composed."""

    run: Callable[..., int]
    actions: tuple[str, ...] = ()
    own_args: bool = False
