"""The column schema: it names every column the tables build, and rejects a table that strays from it."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import AnalysisError, TableSchemaError
from analysis.measures.schema import TABLES, Column, columns, doc, markdown, validate
from analysis.measures.tables import run_tables
from analysis.testing import fakes


@pytest.fixture(scope="module")
def built() -> dict:
    return run_tables(fakes.mixed())[0]


def test_the_schema_lists_exactly_the_columns_the_tables_build_in_order(built) -> None:
    assert set(built) == set(TABLES)
    for name, table in built.items():
        assert list(table.columns) == [c.name for c in columns(name)]
        validate(name, table)


def test_a_missing_an_extra_or_a_mistyped_column_is_named(built) -> None:
    blocks = built["blocks"]
    with pytest.raises(TableSchemaError, match="table 'blocks' lacks column 'eta2_null'"):
        validate("blocks", blocks.drop(columns="eta2_null"))
    with pytest.raises(TableSchemaError, match="has column 'extra', which its schema does not know"):
        validate("blocks", blocks.assign(extra=1.0))
    with pytest.raises(TableSchemaError, match="column 'samples' of table 'blocks' is float64, not int64"):
        validate("blocks", blocks.astype({"samples": np.float64}))
    channels = built["channels"]
    with pytest.raises(TableSchemaError, match="column 'significant' .* not bool"):
        validate("channels", channels.astype({"significant": np.int64}))
    with pytest.raises(TableSchemaError, match="column 'block' .* not str"):
        validate("channels", channels.astype({"block": "category"}))
    with pytest.raises(TableSchemaError, match="column 'class_name' .* not category"):
        validate("class_means", built["class_means"].astype({"class_name": str}))
    with pytest.raises(TableSchemaError, match="no table 'chanels'"):
        validate("chanels", channels)
    assert issubclass(TableSchemaError, AnalysisError)


def test_str_columns_read_back_as_object_still_validate(built) -> None:
    validate("channels", built["channels"].astype({"block": object, "preferred_class_name": object}))


def test_doc_and_markdown_come_from_the_same_columns(monkeypatch) -> None:
    assert doc("blocks", "eta2_null").startswith("(K'-1)/(N-1)")
    assert "Morcos et al. 2018" in doc("channels", "selectivity")
    with pytest.raises(TableSchemaError, match="has no column 'eta3'"):
        doc("blocks", "eta3")
    text = markdown("class_means")
    lines = text.splitlines()
    assert lines[0] == "### `class_means`" and lines[4] == "| column | dtype | meaning |"
    assert lines[6:] == [f"| `{c.name}` | {c.dtype} | {c.doc} |" for c in columns("class_means")]
    monkeypatch.setitem(TABLES, "bars", ("A bar in a cell.", (Column("x", "int64", "a | b"),)))
    assert markdown("bars").splitlines()[-1] == "| `x` | int64 | a \\| b |"
    with pytest.raises(TableSchemaError, match="dtype 'int'"):
        Column("x", "int", "no such dtype")

