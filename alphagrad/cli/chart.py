"""A line chart drawn with plain characters, for a terminal: loss against step.

    >>> print(line_chart({"train": [(0, 3.0), (100, 2.1)], "val": [(100, 2.3)]}, width=30))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MARKS = "*o+x#@"


def _position(value: float, low: float, high: float, cells: int) -> int:
    """The cell (0 .. cells-1) of ``value`` on an axis from ``low`` to ``high``."""
    if high == low:
        return (cells - 1) // 2
    return round((value - low) / (high - low) * (cells - 1))


def _label(value: float) -> str:
    return f"{value:.4g}"


def line_chart(series: dict[str, Sequence[tuple[float, float]]], width: int = 60,
               height: int = 15) -> str:
    """``series`` (name -> (x, y) points) on one ``width`` x ``height`` grid of characters, a
    mark per series (``*``, ``o``, ...; a later series draws over an earlier one), the y range
    at the left, the x range below, and a legend. Points with a non-finite y are left out."""
    if width < 2 or height < 2:
        raise ValueError(f"line_chart: width and height must be at least 2, got {width}x{height}")
    if len(series) > len(MARKS):
        raise ValueError(f"line_chart: at most {len(MARKS)} series, got {len(series)}")
    points = {name: [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
              for name, pts in series.items()}
    everything = [p for pts in points.values() for p in pts]
    if not everything:
        return "(no data to chart)"
    xs, ys = [x for x, _ in everything], [y for _, y in everything]
    x_low, x_high, y_low, y_high = min(xs), max(xs), min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]
    for mark, pts in zip(MARKS, points.values()):
        for x, y in pts:
            row = height - 1 - _position(y, y_low, y_high, height)
            grid[row][_position(x, x_low, x_high, width)] = mark
    labels = {0: _label(y_high), height - 1: _label(y_low)}
    if height > 2:
        labels.setdefault(height // 2, _label(y_high - (height // 2) * (y_high - y_low)
                                              / (height - 1)))
    pad = max(map(len, labels.values()))
    lines = [f"{labels.get(r, ''):>{pad}} |{''.join(row)}".rstrip() for r, row in enumerate(grid)]
    lines.append(" " * pad + " +" + "-" * width)
    left, right = _label(x_low), _label(x_high)
    lines.append(" " * (pad + 2) + left + right.rjust(width - len(left)))
    legend = "   ".join(f"{mark} {name}" for mark, name in zip(MARKS, points))
    lines.append(" " * (pad + 2) + legend)
    return "\n".join(lines)
