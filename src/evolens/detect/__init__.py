"""Detectors: rules over stored metric series that emit events (alerts) to the run."""

from .onset import BiasedGeneralizationOnset, OnsetReport
from .rules import ALERT_PREFIX, Alert, Rule, Threshold, Trend, check_rules, rule_from_dict

__all__ = ["ALERT_PREFIX", "Alert", "BiasedGeneralizationOnset", "OnsetReport", "Rule", "Threshold", "Trend",
           "check_rules", "rule_from_dict"]
