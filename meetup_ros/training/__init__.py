"""Shared training machinery: typed run configuration, atomic checkpoints, metrics, DDP."""
