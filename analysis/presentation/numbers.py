"""Numbers as a reader sees them: each column of a table rounded to 3 significant digits of its largest
value, the same number of decimals down the column, so that 0.0009001 reads 0.000900 and a column of
0.37..0.89 reads 0.371..0.885. The terminal, the HTML pages and the PDF print tables through here.

    print(text_table(run.blocks[["block", "eta2_mean"]]))
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SIGNIFICANT = 3  # digits of a column's largest value
MAX_DECIMALS = 6
MISSING = "-"  # a NaN cell: not measured (a control that was not collected, an undefined estimate)


def decimals(values: pd.Series) -> int:
    """Decimals that give the column's largest finite |value| SIGNIFICANT digits (at most MAX_DECIMALS)."""
    finite = np.abs(values.to_numpy(dtype=float))
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size == 0:
        return 0
    return int(min(MAX_DECIMALS, max(0, SIGNIFICANT - 1 - math.floor(math.log10(finite.max())))))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as text: every float column rounded to its precision (decimals), other cells as they
    print, a missing cell (NaN, None) as MISSING."""
    cells = {}
    for column in frame.columns:
        values = frame[column].tolist()
        places = decimals(frame[column]) if pd.api.types.is_float_dtype(frame[column]) else None
        cells[column] = [MISSING if _missing(v) else f"{v:.{places}f}" if places is not None else str(v)
                         for v in values]
    return pd.DataFrame(cells, index=frame.index, columns=frame.columns, dtype=object)


def text_table(frame: pd.DataFrame) -> str:
    """The frame as aligned plain text (formatted), every row and column, without the index."""
    return formatted(frame).to_string(index=False, max_rows=None, max_cols=None)
