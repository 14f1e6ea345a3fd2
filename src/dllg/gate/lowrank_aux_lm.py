"""`lowrank_aux_lm`: the paper's full gate: a low-rank projection of the concatenated expert states
(rank `proj_rank`, 64 in the paper) feeds the aux LM with LoRA, then the MLP head."""

from dllg.gate.aux_lm import AuxLMGate
from dllg.gate.base import register_gate


@register_gate
class LowRankAuxLMGate(AuxLMGate):
    variant = "lowrank_aux_lm"
    low_rank = True
