"""``python -m nas_agent``: the ``nas-agent`` command."""

from nas_agent.cli import console_main

console_main()
