"""Which cell is fastest, and whether the intervals allow saying so (one rule for every table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgebench.controller.cells import Cell


@dataclass(frozen=True)
class Ranking:
    """OK cells fastest first, and whether the fastest is separable from the runner-up.

    Separable means the two 95 % intervals do not overlap. Where they overlap,
    or an interval is missing, nobody is declared fastest: "within noise".
    """

    order: tuple[Cell, ...]
    separable: bool

    @property
    def winner(self) -> Cell | None:
        """The fastest cell, only where it is separable from the runner-up (or alone)."""
        return self.order[0] if self.order and self.separable else None

    @property
    def leader(self) -> Cell | None:
        """The cell with the highest figure, separable or not."""
        return self.order[0] if self.order else None

    @property
    def margin(self) -> float | None:
        if len(self.order) < 2 or not self.order[1].img_per_s:
            return None
        return (self.order[0].img_per_s or 0.0) / self.order[1].img_per_s

    def text(self, label: Any = lambda c: c.backend) -> str:
        """E.g. "keras-jax (1.32x torch)", "within noise: keras-jax 1.05x torch", or the one name."""
        if not self.order:
            return ""
        top = label(self.order[0])
        if len(self.order) == 1:
            return top
        runner_up = label(self.order[1])
        margin = f"{self.margin:.2f}× {runner_up}" if self.margin is not None else runner_up
        if self.separable:
            return f"{top} ({margin})"
        return f"within noise: {top} {margin}"


def rank(cells: list[Cell]) -> Ranking:
    ok = sorted((c for c in cells if c.ok), key=lambda c: c.img_per_s or 0.0, reverse=True)
    if len(ok) < 2:
        return Ranking(tuple(ok), separable=bool(ok))
    top, second = ok[0].interval, ok[1].interval
    separable = top is not None and second is not None and top[0] > second[1]
    return Ranking(tuple(ok), separable)
