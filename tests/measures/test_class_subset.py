"""A class subset labelled with a model's output indices (3 of 1000 ImageNet classes) gives the same
tables as the same samples labelled 0..2: every measure uses only the classes with samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analysis.capture.collect import collect
from analysis.capture.stats import StatsConfig
from analysis.jobs import data_warnings
from analysis.measures.tables import run_tables
from analysis.testing.nets import PlantedNet, batches, planted_data

MODEL_INDEX = np.array([1, 254, 999])  # goldfish, pug, toilet tissue


def test_model_indices_give_the_tables_of_compact_labels() -> None:
    torch.manual_seed(0)
    net = PlantedNet(8).eval()
    x, y = planted_data(90, num_classes=3, channels=8)
    compact = collect(net, batches(x, y, 30), 3, progress=False)
    config = StatsConfig(1000, classes=tuple(MODEL_INDEX))  # as the job sets it from the data's labels
    indexed = collect(net, batches(x, torch.from_numpy(MODEL_INDEX)[y], 30), 1000, config=config, progress=False)
    assert indexed.config.reservoir == compact.config.reservoir == 256  # sized by the 3 classes present
    (a, onset_a), (b, onset_b) = run_tables(compact), run_tables(indexed)
    assert onset_a == onset_b
    pd.testing.assert_frame_equal(a["blocks"], b["blocks"], check_exact=False, rtol=1e-9, atol=1e-12)
    assert (a["blocks"]["classes"] == 3).all() and (a["blocks"]["eta2_perm"] < 0.05).all()  # a null of 3 classes
    channels_b = b["channels"].assign(preferred_class=np.searchsorted(MODEL_INDEX, b["channels"]["preferred_class"]))
    columns = [c for c in a["channels"] if c != "preferred_class_name"]
    pd.testing.assert_frame_equal(a["channels"][columns], channels_b[columns], check_exact=False, rtol=1e-9)
    means_b = b["class_means"].assign(**{"class": MODEL_INDEX.searchsorted(b["class_means"]["class"]).astype(np.int32)})
    pd.testing.assert_frame_equal(a["class_means"].drop(columns="class_name"), means_b.drop(columns="class_name"))
    assert data_warnings(indexed) == data_warnings(compact) == []  # the 997 classes left out are not "missing"
