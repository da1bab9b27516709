"""collect runs its pass in eval mode, so it never changes the model, and restores the model's mode."""

from __future__ import annotations

import torch

from analysis.capture.collect import collect
from analysis.models.architectures import build_model
from analysis.testing.nets import batches, planted_data


def test_collect_in_train_mode_leaves_batchnorm_and_mode_unchanged():
    torch.manual_seed(0)
    model = build_model("se_resnet20", in_channels=16, num_classes=10).train()
    model.layer1.eval()  # a mixed state comes back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = planted_data(40)
    eval_stats = collect(model, batches(x, y, 20), 10, progress=False)
    assert model.training and not model.layer1.training and model.layer2.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name  # running means and counts untouched
    reference = collect(model.eval(), batches(x, y, 20), 10, progress=False)  # the pass a model in eval mode gets
    assert torch.equal(eval_stats.moments("SE_2_1")[1], reference.moments("SE_2_1")[1])
