"""What an evaluation grid shows besides results.csv: its rows as an aligned table (printed at the
end of the run) and as TensorBoard scalars against alpha (Figure 4's x axis)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

from .base import ResultRow, RunContext

# The headline metrics of a pair's row in the printed table, after curr_acc1 (the accuracy at
# alpha1): the original's results columns (Figure 4's curves and the diversity of the pair).
TABLE_METRICS = ("m0_acc", "ensemble_acc", "tvdist", "feat_cossim")


def grid_table(rows: Sequence[ResultRow]) -> str:
    """The rows as right-aligned columns: the settings that tell them apart (alpha0, alpha1),
    ``curr_acc1``, then those of :data:`TABLE_METRICS` the rows hold; one line per row."""
    keys = list(rows[0].columns)
    metrics = [k for k in TABLE_METRICS if k in rows[0].metrics]
    settings = [_fixed([r.columns[k] for r in rows]) for k in keys]
    cells = [[col[i] for col in settings] + [_metric(r.acc1)] + [_metric(r.metrics.get(k)) for k in metrics]
             for i, r in enumerate(rows)]
    return format_table([*keys, "curr_acc1", *metrics], cells)


def format_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """``header`` and ``cells`` (strings) as lines of right-aligned columns, two spaces apart."""
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(header)]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in [header, *cells])


def log_grid(ctx: RunContext, rows: Sequence[ResultRow], x: str = "alpha1") -> None:
    """Each row's ``curr_acc1`` and numeric metrics as TensorBoard scalars ``eval/<column>`` at step
    ``round(100 * row.columns[x])`` (alpha in hundredths), rows in increasing x: TensorBoard drops
    the later points of a tag whose steps go back."""
    for r in sorted(rows, key=lambda r: r.columns[x]):
        step = round(100 * r.columns[x])
        for tag, value in {"curr_acc1": r.acc1, **r.metrics}.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                ctx.log_scalar(f"eval/{tag}", value, step)


def _fixed(values: Sequence[float]) -> list:
    """Numbers with the decimals the most precise one needs (at most 6): 0.00, 0.05, ..., 1.00."""
    decimals = max(len(f"{v:.6f}".rstrip("0").partition(".")[2]) for v in values)
    return [f"{v:.{decimals}f}" for v in values]


def _metric(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.4f}"
