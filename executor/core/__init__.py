"""The wire core both programs share: names, topology, frames, errors, settings, progdefs."""
