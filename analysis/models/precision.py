"""The mixed-precision context of a forward pass: the one place an `amp` name becomes torch.autocast.

    with autocast(device, "bf16"):     # or None (or "none", as --amp spells it): the model's own dtype
        logits = model(x)
"""

from __future__ import annotations

import contextlib

import torch

from analysis.errors import OptionError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AMP_NAMES = ("none", *AMP_DTYPES)  # what --amp takes; "none" runs the model in its own dtype


def amp_name(amp: str | None) -> str | None:
    """`amp` as the library reads it: None for the model's own dtype (None or "none"), else a key of
    AMP_DTYPES; OptionError for another name."""
    if amp is None or amp == "none":
        return None
    if amp not in AMP_DTYPES:
        raise OptionError(f"amp must be one of {', '.join(AMP_DTYPES)} or None, not {amp!r}.")
    return amp


def autocast(device: torch.device | str, amp: str | None) -> contextlib.AbstractContextManager:
    """A reusable context that runs the forward passes inside it under `amp` ("bf16", "fp16") on
    `device`'s type, or changes nothing for None or "none". OptionError for another name."""
    amp = amp_name(amp)
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[amp])
