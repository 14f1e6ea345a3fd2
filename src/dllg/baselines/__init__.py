"""Baselines the gate is compared with: weight merges of the experts, and routers that pick one expert."""
