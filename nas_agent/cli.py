"""``nas-agent key=value ...`` (also ``nas agent`` where the whole package is installed): the
measurement agent's command. Bad input ends with one line and exit code 2; Ctrl-C or SIGTERM
tells the server the agent leaves (its lease is queued again at once) and exits."""

from __future__ import annotations

import signal
import sys

from nas_agent.agent import Agent, AgentConfig, AgentStopped
from nas_agent.client import TOKEN_ENV, Client, ServerError, Unreachable, read_token

USAGE = f"""\
usage: nas-agent server=URL [token_file=FILE | token=TOKEN] [target=NAME] [lease_s=30] [poll_s=1]
                 [max_requests=N]

Measures ONNX models for a `nas serve` on this device, with ONNX Runtime alone (no torch).
  server        the service's URL, e.g. http://search-host:8080
  token_file    a file holding a measure token (nas token create token_name=NAME scope=measure);
                or token=TOKEN, or ${TOKEN_ENV} in the environment
  target        the name searches ask for (profiler=remote profiler.target=NAME); the token's name
  lease_s       a lease lapses unless renewed this often (renewed every third of it; default 30)
  poll_s        how often an idle agent asks for work (default 1)
  max_requests  stop after this many measurements (default: run until stopped)
"""
KEYS = ("server", "token", "token_file", "target", "lease_s", "poll_s", "max_requests")


class UsageError(ValueError):
    """Bad input: one line."""


def parse(args: list[str]) -> AgentConfig:
    """The agent's settings from ``key=value`` arguments."""
    given: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            raise UsageError(f"unknown argument {arg!r}; keys: {', '.join(KEYS)}")
        given[key] = value
    if not given.get("server"):
        raise UsageError("server: give the service's URL, e.g. server=http://host:8080")
    try:
        token = read_token(given.get("token"), given.get("token_file"))
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not token:
        raise UsageError(f"token: give token_file=FILE, token=TOKEN or set ${TOKEN_ENV} (a measure token)")
    numbers: dict[str, float | int | None] = {}
    for key, kind in (("lease_s", float), ("poll_s", float), ("max_requests", int)):
        if key in given and given[key] not in ("", "null", "none"):
            try:
                numbers[key] = kind(given[key])
            except ValueError:
                raise UsageError(f"{key}: expected a number, got {given[key]!r}") from None
    try:
        Client(given["server"], token)  # checks the URL
        return AgentConfig(server=given["server"], token=token, target=given.get("target") or None, **numbers)
    except ValueError as e:
        raise UsageError(str(e)) from None


def main(args: list[str] | None = None, prog: str = "nas-agent") -> int:
    args = sys.argv[1:] if args is None else list(args)
    if any(a in ("-h", "--help", "help") for a in args):
        print(USAGE, end="")
        return 0
    try:
        agent = Agent(parse(args), log=lambda line: print(line, flush=True))
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    try:
        return agent.run()
    except AgentStopped as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (ServerError, Unreachable) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    finally:
        agent.leave()


def console_main() -> None:
    """The ``nas-agent`` executable: SIGTERM stops it as Ctrl-C does (the server is told)."""

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    sys.exit(main())
