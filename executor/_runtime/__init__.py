"""The executor's private runtime: only executor/ itself (and executor.inprocess) imports it."""
