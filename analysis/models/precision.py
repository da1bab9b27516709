"""The mixed-precision context of a forward pass: the one place an `amp` name becomes torch.autocast.

    with autocast(device, "bf16"):     # or None: the model's own dtype
        logits = model(x)
"""

from __future__ import annotations

import contextlib

import torch

from analysis.errors import AnalysisError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, amp: str | None) -> contextlib.AbstractContextManager:
    """A reusable context that runs the forward passes inside it under `amp` ("bf16", "fp16") on
    `device`'s type, or changes nothing for None. Raises AnalysisError for another name."""
    if amp is None:
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise AnalysisError(f"amp must be one of {', '.join(AMP_DTYPES)} or None, not {amp!r}.")
    return torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[amp])
