"""Hydra entry points (the only place that composes configs; `nexus/` never imports Hydra)."""
