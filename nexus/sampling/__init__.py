"""Policies that sample responses, best-of-N selection, and Math-Shepherd step labelling."""

from nexus.sampling.policy import HFPolicy, Policy, generate_cached

__all__ = ["HFPolicy", "Policy", "generate_cached"]
