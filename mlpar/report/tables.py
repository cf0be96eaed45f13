"""Aligned text and markdown tables: the one table renderer of mlpar."""

from __future__ import annotations

import math

__all__ = ["format_table", "format_value"]


def format_value(v):
    """A cell's text: 4 significant digits, ``nan``, lists in brackets, None empty."""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(format_value(x) for x in v) + "]"
    return "" if v is None else str(v)


def format_table(rows, columns, *, markdown=False, cell=None, right=()):
    """Render ``rows`` (dicts) as an aligned text table or a markdown table.

    Parameters
    ----------
    rows : iterable of dict
    columns : list of str or (key, header)
    markdown : bool, default=False
    cell : callable, optional
        ``cell(key, row) -> str``; default :func:`format_value` of ``row.get(key)``.
    right : collection of str, default=()
        Keys of the columns to right-align (numbers read better that way).

    Returns
    -------
    str
    """
    header = [c if isinstance(c, str) else c[1] for c in columns]
    keys = [c if isinstance(c, str) else c[0] for c in columns]
    cell = cell or (lambda key, row: format_value(row.get(key)))
    body = [[cell(k, r) for k in keys] for r in rows]
    flush_right = [k in right for k in keys]
    if markdown:
        rule = ["---:" if r else "---" for r in flush_right]
        return "\n".join("| " + " | ".join(line) + " |" for line in [header, rule, *body])
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(header)]

    def line(values):
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, flush_right)
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)])
