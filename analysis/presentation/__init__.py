"""Stage 7, presentation: views of a run's tables, figures, and HTML/PDF reports."""
