"""Integrations with the tools people already train and log with: TensorBoard export (more to come: Lightning,
diffusers)."""
