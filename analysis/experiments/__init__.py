"""Stage 6, experiments: interventions on the gates and attributions to them, against a run."""
