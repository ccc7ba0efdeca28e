"""Policies that sample responses, best-of-N selection, and Math-Shepherd step labelling."""

from nexus.sampling.policy import ArithmeticPolicy, HFPolicy, Policy, generate_cached

__all__ = ["ArithmeticPolicy", "HFPolicy", "Policy", "generate_cached"]
