"""One-command experiments: ``python -m experiments.<name>`` (thin wrappers over ``evolens.experiments``)."""
