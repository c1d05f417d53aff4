"""What a write token may ask of the server: a ``nas`` command with checked settings, nothing more.

A job's arguments are Hydra overrides, and Hydra can do much more than set a value: ``_target_``
names any callable to build, ``${oc.env:...}`` reads the server's environment, ``hydra.*`` keys
reach the config search path and run folders, sweeps start many runs. So before anything runs,
each argument is parsed with Hydra's own override parser and accepted only as

* ``key=value`` of a known top-level setting (``nas.schema.NasConfig``) that is not the server's
  own (storage, cache, tokens, listening address, the folders and clusters below);
* ``group=option`` of a known config group (``nas.schema.GROUP_KEYS``), the option shipped with
  the package, in the server's ``--config-dir`` folders or an installed profiler plugin, and
  ``+space=NAME`` the same way;
* ``group.parameter=value`` of such a group (the CLI check that follows says whether the
  parameter exists and has the right type).

Nowhere a key or a mapping key that starts with ``_`` (``_target_``, ``_partial_``, ...), no
``hydra`` key, no ``@package``, no deletion or forced addition, no sweep, no ``${...}`` in any
value, no timm argument that loads a file. Values of path settings (``out_dir``, ``arch``,
``predictor``, and group parameters named ``root``, ``path``, ``folder``, ``file`` or ending in
``_dir``, ``_path``, ``_file``, ``_root``) must lie in the server's folders; Ray cluster
addresses must be ones the server was started with. Messages name the key and never hold what a
resolver would have produced (nothing is resolved here).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.config import choices
from nas.schema import GROUP_KEYS, NasConfig

MAX_ARGS = 64  # arguments of one job
MAX_ARG_CHARS = 2_000  # characters of one argument
MAX_BODY_BYTES = 64 * 1024  # a request body (the app answers 413 above it)

# Settings that are the server's: a job never chooses them.
SERVER_KEYS = frozenset(
    {
        "storage",
        "cache_dir",
        "export_dir",
        "public_reads",
        "token_name",
        "scope",
        "host",
        "port",
        "data_dirs",
        "clusters",
        "dashboard_url",
    }
)
TOP_LEVEL_PATHS = {"out_dir": "write", "arch": "read", "predictor": "read"}
PATH_NAME = re.compile(r"(root|path|folder|file|dir)|.*_(dir|path|file|root)")
WRITE_NAME = re.compile(r"folder|dir|.*_dir")
CLUSTER_KEYS = frozenset({"executor.address", "trainer.address"})
# timm.create_model arguments that load weights from a file or a hub (timm unpickles some).
LOADING_KEYS = frozenset(
    {"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir", "file"}
)
SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
OPTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
TIMM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class PolicyError(ValueError):
    """An argument the server does not run: one line naming the key."""


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass(frozen=True)
class JobPolicy:
    """The rules above for a server whose own folders are ``workdir`` (where jobs run and the
    cache lives) and ``export_dir``; ``data_dirs`` may also be read (datasets), ``clusters`` are
    the Ray addresses jobs may use, ``config_dirs`` the server's extra config folders."""

    workdir: Path
    export_dir: Path
    data_dirs: Sequence[Path] = ()
    clusters: Sequence[str] = ()
    config_dirs: Sequence[str] = ()
    _options: dict[str, set[str]] = field(default_factory=dict, compare=False, repr=False)

    def check(self, args: Sequence[str]) -> list[str]:
        """``args`` as given, once every one passes; raises PolicyError for the first that does not."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import HydraException

        if len(args) > MAX_ARGS:
            raise PolicyError(f"args: at most {MAX_ARGS} arguments, got {len(args)}")
        parser = OverridesParser.create()
        for arg in args:
            if len(arg) > MAX_ARG_CHARS:
                raise PolicyError(f"args: an argument of {len(arg):,} characters (at most {MAX_ARG_CHARS:,})")
            if "\x00" in arg:
                raise PolicyError("args: an argument holds a NUL character")
            try:
                override = parser.parse_override(arg)
            except HydraException:
                raise PolicyError(f"{_shown(arg)} is not key=value in Hydra's override syntax") from None
            self._check_one(arg, override)
        return list(args)

    def _check_one(self, arg: str, override: Any) -> None:
        from hydra.core.override_parser.types import OverrideType

        key = override.key_or_group
        if override.package is not None:
            raise PolicyError(f"{key}: @package overrides are not accepted in jobs")
        if "/" in key:
            raise PolicyError(f"{key}: nested config groups are not accepted in jobs")
        segments = key.split(".")
        if any(not SEGMENT.fullmatch(s) for s in segments):
            bad = next(s for s in segments if not SEGMENT.fullmatch(s))
            what = "keys starting with '_' (such as _target_)" if bad.startswith("_") else f"the key {bad!r}"
            raise PolicyError(f"{key}: {what} are not accepted in jobs; give settings only")
        top = segments[0]
        if top == "hydra":
            raise PolicyError(f"{key}: hydra settings are the server's, not a job's")
        if top in SERVER_KEYS:
            raise PolicyError(f"{key}: a setting of the server, not of a job; leave it out")
        if override.type == OverrideType.ADD and key != "space":
            raise PolicyError(f"+{key}: only +space=NAME may add a key in a job")
        if override.type not in (OverrideType.CHANGE, OverrideType.ADD):
            raise PolicyError(f"{key}: deleting or force-adding keys is not accepted in jobs")
        if override.is_sweep_override():
            raise PolicyError(f"{key}: sweeps are not accepted in jobs; start one job per value")
        value = override.value()
        _check_value(key, value)
        if top not in GROUP_KEYS and top not in NasConfig.model_fields:
            raise PolicyError(f"unknown key {key!r}; nas --help lists the keys")
        if top in GROUP_KEYS and len(segments) == 1:
            self._check_option(top, value)
        elif top not in GROUP_KEYS and len(segments) > 1:
            raise PolicyError(f"{key}: {top} is a setting, not a config group")
        if segments[-1] in LOADING_KEYS:
            raise PolicyError(f"{key}: arguments that load weights from files are not accepted in jobs")
        if (
            key == "timm"
            and value is not None
            and not (isinstance(value, str) and TIMM_NAME.fullmatch(value))
        ):
            raise PolicyError(f"timm: expected a timm model name, got {_shown(str(value))}")
        if key in CLUSTER_KEYS and value is not None and str(value) not in self.clusters:
            known = ", ".join(self.clusters) or "none (nas serve clusters=[...])"
            raise PolicyError(f"{key}: not a cluster of this server (its clusters: {known})")
        kind = TOP_LEVEL_PATHS.get(key) if len(segments) == 1 else _path_kind(segments[-1])
        if kind is not None and value is not None:
            self._check_path(key, value, kind)

    def options(self, group: str) -> list[str]:
        """The options of a config group a job may choose (installed profiler plugins included)."""
        if group not in self._options:
            self._options[group] = set(choices(group, self.config_dirs))
        return sorted(self._options[group])

    def _check_option(self, group: str, value: Any) -> None:
        if not isinstance(value, str) or not OPTION.fullmatch(value):
            raise PolicyError(f"{group}: expected the name of a {group} option")
        if value not in self.options(group):
            valid = ", ".join(self.options(group)) or "none"
            raise PolicyError(f"unknown {group} {value!r}; valid: {valid}")

    def roots(self, kind: str) -> list[Path]:
        """Folders a job may write (``write``) or read (``read``) under."""
        own = [self.workdir, self.export_dir]
        folders = own if kind == "write" else own + list(self.data_dirs)
        return [Path(os.path.realpath(p)) for p in folders]

    def _check_path(self, key: str, value: Any, kind: str) -> None:
        if not isinstance(value, str) or not value:
            raise PolicyError(f"{key}: expected a path")
        path = Path(value)
        if value.startswith("~"):
            raise PolicyError(f"{key}: give a path inside the server's folders, not under a home folder")
        resolved = Path(os.path.realpath(path if path.is_absolute() else self.workdir / path))
        if not any(resolved == root or resolved.is_relative_to(root) for root in self.roots(kind)):
            where = "the server's folders" if kind == "write" else "the server's folders or data_dirs"
            raise PolicyError(f"{key}: {_shown(value)} is outside {where}")


def _path_kind(name: str) -> str | None:
    if not PATH_NAME.fullmatch(name):
        return None
    return "write" if WRITE_NAME.fullmatch(name) else "read"


def _check_value(key: str, value: Any) -> None:
    """No interpolation anywhere in a value, and no mapping key that builds or loads anything."""
    if isinstance(value, str):
        if "${" in value:
            raise PolicyError(f"{key}: interpolations (${{...}}) and resolvers are not accepted in jobs")
    elif isinstance(value, dict):
        for k, v in value.items():
            name = str(k)
            if name.startswith("_") or "${" in name:
                raise PolicyError(
                    f"{key}: mapping keys starting with '_' (such as _target_) are not accepted"
                )
            if name in LOADING_KEYS:
                raise PolicyError(f"{key}.{name}: arguments that load weights from files are not accepted")
            _check_value(f"{key}.{name}", v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_value(key, v)


def hydra_string(value: str) -> str:
    """``value`` as a quoted Hydra override value that composes back to exactly ``value`` (no
    interpolation, no escape sequence): for names the server passes on, e.g. a study name."""
    # OmegaConf: "${" is an interpolation unless escaped as "\\${" (backslashes before it doubled).
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    # Hydra, inside single quotes: backslashes before a quote or the end are doubled, quotes escaped.
    text = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"'{text}'"
