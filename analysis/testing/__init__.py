"""Tiny models, planted statistics and fakes for tests and benchmarks (like captum's `captum.testing`).

- `nets`: `PlantedNet`, an SE model whose later gates carry class information by construction, its data
  (`planted_data`), `batches`, and `record_gates`, the brute-force recorder of every gate vector.
- `planted`: `planted_stats`, GateStats with planted class structure at any scale, without a model.
- `fakes`: `FakeStats`, GateStats' reading interface over raw gate values, and the fake data sets of the
  measures' tests; `sklearn_fold_correct`, the probe's independent reference.
- `brute`: brute-force moments and histograms; `data`: `write_idx`, Fashion-MNIST's IDX files.
- `runs`: the CLI's one-line error (`cli_error`) and small run folders made by the CLI.

Shipped with the package so that tests and `bench/` import them like any module; nothing in the
library imports them.
"""
