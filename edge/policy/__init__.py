"""PTZ policies a device can run, and the observation they act on."""

from edge.policy.base import POLICIES, Policy, PolicyContext, make_policy

__all__ = ["POLICIES", "Policy", "PolicyContext", "make_policy"]
