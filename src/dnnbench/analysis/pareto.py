"""Pareto fronts: the models no other model beats on both axes (e.g. more accurate AND faster)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def pareto_mask(frame: pd.DataFrame, x: str, y: str, minimize_x: bool = True, maximize_y: bool = True) -> pd.Series:
    """True for the rows that no other row dominates (at least as good on both axes, better on one).

    Rows with a missing or infinite value are never on the front; exact duplicates of a front point are.
    """
    mask = pd.Series(False, index=frame.index)
    xs = pd.to_numeric(frame[x], errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(frame[y], errors="coerce").to_numpy(dtype=float)
    valid = np.isfinite(xs) & np.isfinite(ys)
    if not valid.any():
        return mask
    # turn both axes into "smaller x is better, larger y is better"
    xs = np.where(minimize_x, xs, -xs)
    ys = np.where(maximize_y, ys, -ys)
    positions = np.flatnonzero(valid)
    order = positions[np.lexsort((-ys[positions], xs[positions]))]  # best x first, best y first on ties
    best_y, last = -np.inf, None
    on_front = []
    for i in order:
        if ys[i] > best_y:
            best_y, last = ys[i], (xs[i], ys[i])
            on_front.append(i)
        elif last == (xs[i], ys[i]):
            on_front.append(i)
    mask.iloc[on_front] = True
    return mask


def pareto_front(frame: pd.DataFrame, x: str, y: str, minimize_x: bool = True, maximize_y: bool = True) -> pd.DataFrame:
    """The front's rows, ordered along x (best x first), ready to draw as a step line."""
    front = frame[pareto_mask(frame, x, y, minimize_x, maximize_y)]
    return front.sort_values(x, ascending=minimize_x, kind="stable")


def pareto_by(frame: pd.DataFrame, groups: Sequence[str], x: str, y: str, minimize_x: bool = True,
              maximize_y: bool = True) -> pd.Series:
    """pareto_mask computed within each group (e.g. per machine, setup and batch size)."""
    mask = pd.Series(False, index=frame.index)
    for _, part in frame.groupby(list(groups), dropna=False, sort=False):
        mask.loc[part.index] = pareto_mask(part, x, y, minimize_x, maximize_y)
    return mask
