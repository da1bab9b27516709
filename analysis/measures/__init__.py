"""Stage 4, measures: pure functions from GateStats to tidy tables, and the onset rule."""
