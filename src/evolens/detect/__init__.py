"""Detectors: rules over stored metric series that emit events (alerts) to the run."""

from .onset import BiasedGeneralizationOnset, OnsetReport

__all__ = ["BiasedGeneralizationOnset", "OnsetReport"]
