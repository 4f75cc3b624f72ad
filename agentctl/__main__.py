"""``python -m agentctl``: the ``agentctl`` command (how ``agentctl batch`` starts each run)."""

from .cli.main import main

main()
