"""Data sets evolens ships or reads offline, as ``ImageDataset`` (images (n, C, H, W) in [0, 1], labels)."""

from .datasets import ImageDataset, digits, disjoint_splits, mnist

__all__ = ["ImageDataset", "digits", "disjoint_splits", "mnist"]
