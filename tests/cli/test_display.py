"""The terminal chart and tables."""

from __future__ import annotations

import math

import pytest

from alphagrad.cli.chart import line_chart
from alphagrad.cli.display import table


def test_chart_places_points_on_the_grid():
    # x 0..4 over 5 columns and y 0..2 over 3 rows: one cell per unit, so every place is known.
    chart = line_chart({"a": [(0, 0.0), (2, 1.0), (4, 2.0)], "b": [(1, 2.0), (3, math.nan)]},
                       width=5, height=3)
    assert chart.splitlines() == [
        "2 | o  *",
        "1 |  *",
        "0 |*",
        "  +-----",
        "   0   4",
        "   * a   o b",
    ]


def test_chart_rounds_to_the_nearest_cell_and_later_series_win():
    chart = line_chart({"low": [(0, 0.0), (10, 10.0)], "high": [(10, 10.0), (4, 3.0)]},
                       width=11, height=6)
    rows = [line.split("|", 1)[1].ljust(11) for line in chart.splitlines()[:6]]
    # y 3.0 -> 3.0 / 10 * 5 = 1.5 -> row 2 from the bottom (round half to even); x 4 -> col 4
    assert rows[-1 - 2][4] == "o"
    assert rows[0][10] == "o"      # drawn by "high" over "low"
    assert rows[-1][0] == "*"
    assert sum(row.count("*") + row.count("o") for row in rows) == 3


def test_chart_labels_and_flat_or_empty_data():
    chart = line_chart({"loss": [(100, 2.5), (200, 2.5)]}, width=20, height=5)
    lines = chart.splitlines()
    assert lines[0].startswith("2.5 |") and lines[4].startswith("2.5 |")
    assert lines[2].startswith("2.5 |*")  # a flat series sits in the middle row
    assert lines[6].split() == ["100", "200"]
    assert line_chart({"loss": [(1, math.inf)]}) == "(no data to chart)"
    with pytest.raises(ValueError, match="at least 2"):
        line_chart({"a": [(0, 1.0)]}, width=1)


def test_table_aligns_numbers_right_and_text_left():
    text = table(["name", "loss"], [["a", 1.5], ["bbb", None], ["cc", 10.25]])
    assert text.splitlines() == [
        "name     loss",
        "----  -------",
        "a      1.5000",
        "bbb         -",
        "cc    10.2500",
    ]
