"""One strategy per level: how to build the workload and closures, check them, and which
columns the rows add (invbench.running.levels.base). The engine does the rest."""

from __future__ import annotations

from invbench.core.spec import Level
from invbench.running.levels.base import LevelStrategy


def strategy_for(level: Level) -> LevelStrategy:
    """A fresh strategy of the level (strategies cache per run, e.g. MAC counts)."""
    if level is Level.OP:
        from invbench.running.levels.op import OpLevel

        return OpLevel()
    if level is Level.LAYER:
        from invbench.running.levels.layer import LayerLevel

        return LayerLevel()
    from invbench.running.levels.model import ModelLevel

    return ModelLevel()


__all__ = ["LevelStrategy", "strategy_for"]
