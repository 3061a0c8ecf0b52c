"""Detectors: rules over stored metric series that emit events (alerts) to the run."""

from .onset import BiasedGeneralizationOnset, OnsetReport
from .rules import Alert, Rule, Threshold, Trend

__all__ = ["Alert", "BiasedGeneralizationOnset", "OnsetReport", "Rule", "Threshold", "Trend"]
