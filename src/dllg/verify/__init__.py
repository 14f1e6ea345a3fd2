"""Verifiers: decide whether a response is right (math answers, exact matches, code run in a sandbox)."""

from dllg.verify.base import STATUSES, VERIFIERS, Reference, Verdict, Verifier, get_verifier, register

__all__ = ["STATUSES", "VERIFIERS", "Reference", "Verdict", "Verifier", "get_verifier", "register"]
