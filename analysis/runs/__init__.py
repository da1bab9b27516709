"""Stage 5, runs: the run folder on disk, and matching a model and data to an existing run."""
