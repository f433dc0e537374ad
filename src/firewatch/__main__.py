"""``python -m firewatch`` is the ``firewatch`` command."""

from firewatch.cli import main

main()
