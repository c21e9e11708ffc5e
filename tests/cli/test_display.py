"""The terminal chart, tables, number formats and the training status line."""

from __future__ import annotations

import math

import pytest

from alphagrad.cli.chart import line_chart
from alphagrad.cli.display import TrainingStatus, count, duration, table


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


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (61, "1m01s"),
                                           (3599, "59m59s"), (3725, "1h02m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("n, text", [(950, "950"), (12_345, "12.3k"), (4_560_000, "4.56M"),
                                     (0.5, "0.5")])
def test_count(n, text):
    assert count(n) == text


def _step(step: int, loss: float = 2.0) -> dict:
    return {"kind": "step", "step": step, "loss": loss, "lr": 1e-3, "tokens_per_sec": 12_345.0,
            "mfu": 0.031, "eta_seconds": 65.0}


def test_status_without_a_terminal_prints_one_line_per_log_interval(capsys):
    status = TrainingStatus(max_iters=6, log_interval=3, tty=False)
    for step in range(1, 7):
        status(_step(step))
    status({"kind": "eval", "step": 6, "train_loss": 1.5, "val_loss": 1.75,
            "val_perplexity": math.exp(1.75)})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("/")[0] for line in lines[:3]] == ["step 1", "step 3", "step 6"]
    assert lines[1] == ("step 3/6 | loss 2.0000 | lr 1.00e-03 | 12.3k tok/s | MFU 3.1% | "
                        "ETA 1m05s")
    assert lines[3] == "eval step 6: train loss 1.5000, val loss 1.7500, val perplexity 5.75"
    assert len(lines) == 4


def test_status_on_a_terminal_rewrites_one_line(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    status = TrainingStatus(max_iters=3, log_interval=100, tty=True)
    status(_step(1, loss=3.0))
    status(_step(2, loss=2.5))
    status({"kind": "checkpoint", "step": 2, "path": "run/ckpt", "is_best": True})
    out = capsys.readouterr().out
    first, second = status.status(_step(1, loss=3.0)), status.status(_step(2, loss=2.5))
    assert out == ("\r" + first + "\r" + second + "\r" + " " * len(second) + "\r"
                   + "  saved run/ckpt (best so far)\n")


def test_status_on_a_narrow_terminal_is_cut_to_fit(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    status = TrainingStatus(max_iters=3, log_interval=100, tty=True)
    status(_step(1))
    assert capsys.readouterr().out == "\r" + status.status(_step(1))[:29]
