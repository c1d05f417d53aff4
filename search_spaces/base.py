"""SearchSpace and Suggester: write a space once, use it for every purpose.

A space is a ``build(s: Suggester) -> ArchConfig`` method. The suggester decides each choice:

* ``OptunaSuggester(trial)``  -- the study's sampler decides (``suggest``)
* ``RandomSuggester(rng)``    -- seeded uniform samples for supernet training (``sample``)
* ``ExtremeSuggester("largest" | "smallest")`` -- sandwich-rule extremes
* ``FixedSuggester(params)``  -- rebuild from a finished trial's ``params`` (``from_params``)

Choices are asked in the order the network needs them (depth first, then only the active layers),
so conditional spaces need nothing special and impossible members cannot be produced.
Parameter names are dotted paths such as ``layer2.num_heads``. Spaces pass every list of
choices ordered from cheapest to most expensive, which is all "largest" and "smallest" need.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Sequence
from typing import Any, Protocol

from search_spaces.arch import PATTERNS, ArchConfig, pattern_group, pattern_level

Choice = Any


class SpaceError(ValueError):
    """A space definition that cannot be used (the message names the offending key)."""


def check_choices(key: str, values: Sequence, allowed: Sequence | None = None) -> list:
    """A non-empty list of distinct choices, each in ``allowed`` (or a positive number)."""
    if isinstance(values, (str, bytes, int, float)):
        raise SpaceError(f"space.{key}: expected a list of choices, got {values!r}")
    values = list(values)
    if not values:
        raise SpaceError(f"space.{key}: needs at least one choice")
    if len(set(map(repr, values))) != len(values):
        raise SpaceError(f"space.{key}: duplicate choices in {values}")
    for value in values:
        if allowed is not None and value not in allowed:
            hint = ""
            if isinstance(value, int) and any(":" in str(a) for a in allowed):
                hint = ' (YAML reads an unquoted 2:4 as the number 124: write "2:4")'
            raise SpaceError(f"space.{key}: {value!r} is not one of {list(allowed)}{hint}")
        if allowed is None and not (isinstance(value, (int, float)) and value > 0):
            raise SpaceError(f"space.{key}: {value!r} is not a positive number")
    return values


def check_range(key: str, value: Sequence, low: int = 1) -> tuple[int, int]:
    """A ``[min, max]`` integer range with ``low <= min <= max``."""
    value = list(value) if not isinstance(value, (str, int)) else [value]
    if len(value) != 2 or not all(isinstance(v, int) for v in value) or not (low <= value[0] <= value[1]):
        raise SpaceError(f"space.{key}: expected [min, max] with {low} <= min <= max, got {value}")
    return value[0], value[1]


class Sparsity:
    """A searchable (pattern, level) axis of SparseLinear / SparseConv2d layers, e.g. ``mlp``."""

    def __init__(self, prefix: str, patterns: Sequence[str], levels: Sequence[float]) -> None:
        self.prefix = prefix
        self.patterns = sorted(check_choices(f"{prefix}_pattern", patterns, PATTERNS), key=PATTERNS.index)
        levels = check_choices(f"{prefix}_sparsity", levels)
        if not all(0 < level < 1 for level in levels):
            raise SpaceError(f"space.{prefix}_sparsity: levels must be in (0, 1), got {levels}")
        self.levels = sorted((float(v) for v in levels), reverse=True)  # sparsest = cheapest

    def check_widths(self, widths: set[int], what: str) -> None:
        """N:M and block patterns need every width to split into groups."""
        for pattern in self.patterns:
            group = pattern_group(pattern)
            bad = sorted(w for w in widths if w % group)
            if bad:
                raise SpaceError(
                    f"space.{self.prefix}_pattern: {pattern} needs widths divisible by {group}; "
                    f"{what} gives {bad}"
                )

    def choose(self, s: Suggester, name: str) -> dict[str, Any]:
        """Pattern first; the level is asked only where the pattern leaves it free."""
        pattern = choose(s, f"{name}.{self.prefix}_pattern", self.patterns)
        level = pattern_level(pattern)
        if level is None:
            level = choose(s, f"{name}.{self.prefix}_sparsity", self.levels)
        return {f"{self.prefix}_pattern": pattern, f"{self.prefix}_sparsity": level}

    def options(self) -> int:
        return sum(1 if pattern_level(p) is not None else len(self.levels) for p in self.patterns)

    def axes(self, where: str) -> dict[str, str]:
        return {
            f"{where}.{self.prefix}_pattern": str(self.patterns),
            f"{where}.{self.prefix}_sparsity": f"{self.levels} (unstructured, block, structured)",
        }


class Suggester(Protocol):
    """Decides one named choice at a time."""

    def categorical(self, name: str, choices: Sequence[Choice]) -> Choice: ...

    def integer(self, name: str, low: int, high: int) -> int: ...


class OptunaSuggester:
    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def categorical(self, name: str, choices: Sequence[Choice]) -> Choice:
        return self.trial.suggest_categorical(name, list(choices))

    def integer(self, name: str, low: int, high: int) -> int:
        return self.trial.suggest_int(name, low, high)


class RandomSuggester:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def categorical(self, name: str, choices: Sequence[Choice]) -> Choice:
        return self.rng.choice(list(choices))

    def integer(self, name: str, low: int, high: int) -> int:
        return self.rng.randint(low, high)


class ExtremeSuggester:
    """Largest or smallest member: spaces pass choices cheapest first, so take an end. The
    decisions are kept in ``params`` (what a study is given to evaluate that member)."""

    def __init__(self, which: str) -> None:
        if which not in ("largest", "smallest"):
            raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}")
        self.index = -1 if which == "largest" else 0
        self.params: dict[str, Any] = {}

    def categorical(self, name: str, choices: Sequence[Choice]) -> Choice:
        self.params[name] = list(choices)[self.index]
        return self.params[name]

    def integer(self, name: str, low: int, high: int) -> int:
        self.params[name] = (low, high)[self.index]
        return self.params[name]


class FixedSuggester:
    """Replays given params; a missing or out-of-range param is an error, never a guess."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.used: set[str] = set()

    def _get(self, name: str) -> Any:
        if name not in self.params:
            raise KeyError(f"param {name!r} missing")
        self.used.add(name)
        return self.params[name]

    def categorical(self, name: str, choices: Sequence[Choice]) -> Choice:
        value = self._get(name)
        if value not in list(choices):
            raise ValueError(f"param {name}={value!r} is not one of {list(choices)}")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value = self._get(name)
        if not (isinstance(value, int) and low <= value <= high):
            raise ValueError(f"param {name}={value!r} is not an int in [{low}, {high}]")
        return value


def choose(s: Suggester, name: str, choices: Sequence[Choice]) -> Choice:
    """Ask ``s`` only when there is a choice: fixed axes do not become study params."""
    choices = list(choices)
    return choices[0] if len(choices) == 1 else s.categorical(name, choices)


def choose_int(s: Suggester, name: str, low: int, high: int) -> int:
    return low if low == high else s.integer(name, low, high)


class SearchSpace(abc.ABC):
    """A family of architectures defined by one ``build`` method.

    Subclasses implement ``build``, ``axes`` (what ``nas spaces`` shows) and ``size`` (number of
    distinct members). Everything else derives from ``build``.
    """

    name: str = ""

    @abc.abstractmethod
    def build(self, s: Suggester) -> ArchConfig:
        """Ask ``s`` for every choice and return the member it describes."""

    @abc.abstractmethod
    def axes(self) -> dict[str, str]:
        """Axis name -> human description of its choices: the rows ``nas spaces`` prints, in
        order. A space adds any derived row it has here too (the vit space's "width vs depth",
        its widest-shallow and narrowest-deep members of comparable size), so callers print
        ``axes()`` and ask nothing else."""

    @abc.abstractmethod
    def size(self) -> int:
        """Number of distinct members."""

    def suggest(self, trial: Any) -> ArchConfig:
        return self.build(OptunaSuggester(trial))

    def sample(self, rng: random.Random) -> ArchConfig:
        return self.build(RandomSuggester(rng))

    def largest(self) -> ArchConfig:
        return self.build(ExtremeSuggester("largest"))

    def smallest(self) -> ArchConfig:
        return self.build(ExtremeSuggester("smallest"))

    def extreme_params(self, which: str) -> dict[str, Any]:
        """The study params of the ``largest`` or ``smallest`` member (to enqueue it)."""
        suggester = ExtremeSuggester(which)
        self.build(suggester)
        return suggester.params

    def from_params(self, params: dict[str, Any]) -> ArchConfig:
        fixed = FixedSuggester(params)
        arch = self.build(fixed)
        extra = set(params) - fixed.used
        if extra:
            raise ValueError(f"params not used by space {self.name!r}: {sorted(extra)}")
        return arch

    @abc.abstractmethod
    def make_supernet(self) -> Any:
        """The weight-sharing supernet holding every member (search_spaces.supernet)."""
