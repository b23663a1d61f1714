"""Point labels that do not overlap, computed in display (pixel) space.

`place_labels`: each label, in priority order, takes the nearest free spot around its point (8 directions at
growing distances) that overlaps no label placed before it, no point and nothing outside the axes; where
no spot is free it takes the least crowded one. A label set away from its point gets a thin leader line.
`column_labels`: labels stacked in a column beside the axes (line ends), spread apart vertically.
Both are deterministic: the same figure gives the same layout.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.text import Text

PAD_PX = 3.0
# up, right, down, left, then the diagonals: labels above their point read most naturally
DIRECTIONS = np.array([(0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1)], float)
RINGS = 10


def _overlap_area(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Overlap of one box (x0, y0, x1, y1) with each row of `boxes`."""
    w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _texts(ax: Axes, texts: Sequence[str], fontsize: float, bold: Sequence[bool] | None,
           color: str) -> tuple[list[Text], np.ndarray]:
    weights = bold if bold is not None else [False] * len(texts)
    artists = [ax.text(0, 0, t, fontsize=fontsize, ha="center", va="center", color=color, zorder=6,
                       fontweight="bold" if b else "normal", clip_on=False) for t, b in zip(texts, weights)]
    renderer = ax.figure.canvas.get_renderer()
    extents = [a.get_window_extent(renderer) for a in artists]
    return artists, np.array([[e.width, e.height] for e in extents]) / 2 + PAD_PX / 2


def place_labels(ax: Axes, x: Sequence[float], y: Sequence[float], texts: Sequence[str],
                 radii_px: Sequence[float] | float = 4.0, fontsize: float = 7.0, bold: Sequence[bool] | None = None,
                 priority: Sequence[float] | None = None, color: str = "#222222") -> list[Text]:
    """Label the data points (x, y) without overlaps; call once the limits and the layout are final.

    `radii_px` are the points' radii in pixels; labels with a higher `priority` (default: bold ones, then
    input order) choose their spot first. Returns the Text artists, in input order.
    """
    n = len(texts)
    if n == 0:
        return []
    ax.set_autoscale_on(False)  # labels and leader lines must not move the limits they were placed in
    anchors = ax.transData.transform(np.column_stack([np.asarray(x, float), np.asarray(y, float)]))
    radii = np.broadcast_to(np.asarray(radii_px, float), (n,)).copy()
    artists, half = _texts(ax, texts, fontsize, bold, color)
    frame = ax.get_window_extent()
    # points are obstacles (a big ball only by its core: text over a translucent ball still reads)
    cores = np.minimum(radii, 6.0)[:, None]
    obstacles = np.hstack([anchors - cores, anchors + cores])
    placed = np.empty((0, 4))
    rank = np.asarray(priority, float) if priority is not None else np.asarray(bold if bold is not None else
                                                                               np.zeros(n), float)
    order = sorted(range(n), key=lambda i: (-rank[i], i))
    centres = np.zeros((n, 2))
    for i in order:
        best, best_cost = None, np.inf
        step = 2 * half[i, 1]
        for ring in range(RINGS):
            for direction in DIRECTIONS:
                gap = radii[i] + PAD_PX + ring * step
                norm = direction / np.hypot(*direction)
                centre = anchors[i] + norm * gap + direction * half[i]
                box = np.array([*(centre - half[i]), *(centre + half[i])])
                outside = max(frame.x0 - box[0], box[2] - frame.x1, frame.y0 - box[1], box[3] - frame.y1, 0.0)
                others = np.delete(obstacles, i, axis=0)
                cost = (_overlap_area(box, placed).sum() + _overlap_area(box, others).sum() + 50.0 * outside)
                if cost == 0:
                    best, best_cost = centre, 0.0
                    break
                cost += ring * 10.0  # among crowded spots, prefer the nearer ones
                if cost < best_cost:
                    best, best_cost = centre, cost
            if best_cost == 0:
                break
        centres[i] = best
        placed = np.vstack([placed, [*(best - half[i]), *(best + half[i])]])
    to_data = ax.transData.inverted()
    for artist, centre, anchor, radius, h in zip(artists, centres, anchors, radii, half):
        artist.set_position(to_data.transform(centre))
        edge = np.clip(anchor, centre - h, centre + h)  # the point of the label's box nearest its point
        if np.hypot(*(edge - anchor)) > radius + PAD_PX + 4:
            start, end = to_data.transform(anchor), to_data.transform(edge)
            ax.plot([start[0], end[0]], [start[1], end[1]], color="#888888", lw=0.5, zorder=5, clip_on=False)
    return artists


def spread(values: Sequence[float], gap: float, low: float, high: float) -> np.ndarray:
    """Positions as close to `values` as possible, at least `gap` apart, kept within [low, high] when they fit."""
    values = np.asarray(values, float)
    order = np.argsort(values, kind="stable")
    pos = values[order].copy()
    for k in range(1, len(pos)):  # push up
        pos[k] = max(pos[k], pos[k - 1] + gap)
    if len(pos) and pos[-1] > high:  # then down from the ceiling
        pos[-1] = high
        for k in range(len(pos) - 2, -1, -1):
            pos[k] = min(pos[k], pos[k + 1] - gap)
    if len(pos) and pos[0] < low:  # and up from the floor again: if they do not fit, they overflow upwards
        pos[0] = low
        for k in range(1, len(pos)):
            pos[k] = max(pos[k], pos[k - 1] + gap)
    out = np.empty_like(pos)
    out[order] = pos
    return out


def column_labels(ax: Axes, x: Sequence[float], y: Sequence[float], texts: Sequence[str], colors: Sequence[str],
                  fontsize: float = 6.0, offset_px: float = 12.0) -> list[Text]:
    """Labels in a column just right of the axes, each level with its point (x, y) where room allows,
    joined to it by a thin line in the label's colour."""
    n = len(texts)
    if n == 0:
        return []
    ax.set_autoscale_on(False)
    anchors = ax.transData.transform(np.column_stack([np.asarray(x, float), np.asarray(y, float)]))
    artists, half = _texts(ax, texts, fontsize, None, "#222222")
    frame = ax.get_window_extent()
    ys = spread(anchors[:, 1], 2 * half[:, 1].max(), frame.y0, frame.y1)
    to_data = ax.transData.inverted()
    left = frame.x1 + offset_px
    for artist, anchor, label_y, color in zip(artists, anchors, ys, colors):
        artist.set_horizontalalignment("left")
        artist.set_position(to_data.transform((left, label_y)))
        start, end = to_data.transform(anchor), to_data.transform((left - 2, label_y))
        ax.plot([start[0], end[0]], [start[1], end[1]], color=color, lw=0.4, alpha=0.7, clip_on=False)
    return artists
