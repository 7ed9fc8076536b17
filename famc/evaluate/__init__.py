"""Evaluating architectures: the engine (extract → BN re-calibrate → predict), the on-disk cache
of correctness vectors, and the build's evaluate stage (``famc.evaluate.stage``)."""

from famc.evaluate.engine import Evaluator

__all__ = ["Evaluator"]
