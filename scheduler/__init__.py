"""The scheduler side of dagyo: the flow model and checker, the scheduler service and the CLI."""
