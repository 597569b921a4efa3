"""vapi-router: declarative YAML routing for Vapi assistant-request webhooks.

Public API: load_policy, evaluate, Policy, Facts, Decision, PolicyError.
"""

from router.errors import PolicyError, PolicyInvalid
from router.policy.loader import load_policy
from router.runtime.evaluator import evaluate
from router.runtime.facttypes import Facts
from router.runtime.model import Decision, Policy

__all__ = ["Decision", "Facts", "Policy", "PolicyError", "PolicyInvalid", "evaluate", "load_policy"]
