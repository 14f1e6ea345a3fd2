"""The learned gate: variants (one file each, one registry) behind one config, and its checkpoints."""

from dllg.gate import aux_lm, cross_attn, lowrank_aux_lm, mlp  # noqa: F401  (register the variants)
from dllg.gate.base import GATES, Gate, register_gate
from dllg.gate.checkpoint import build_gate, load_gate, read_gate_config, save_gate
from dllg.gate.config import GateConfig

__all__ = [
    "GATES",
    "Gate",
    "GateConfig",
    "build_gate",
    "load_gate",
    "read_gate_config",
    "register_gate",
    "save_gate",
]
