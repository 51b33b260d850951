"""``python -m scheduler.cli``: the same as the ``dagyo`` command."""

from scheduler.cli import main

main()
