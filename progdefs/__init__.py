"""The sample progdef catalogue: one folder per progdef."""
