"""`aux_lm`: an auxiliary causal LM (frozen, with LoRA) reads the projected expert states as input
embeddings, autoregressively with its own KV cache; an MLP head turns its last hidden state into scores.

The trajectory so far (u_1..u_t) informs the weight at t, which per-token gates cannot see.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from dllg.errors import DllgError
from dllg.experts.hf import cache_argument
from dllg.experts.padding import join_masked, roll_back_masked, trim_masked_columns
from dllg.gate.base import Gate, mlp_head, register_gate
from dllg.gate.config import GateConfig


def load_aux_decoder(source: str | PreTrainedModel, layers: int | None) -> nn.Module:
    """The decoder stack of a causal LM, optionally cut to its first `layers` layers, without its
    token embedding and output head (the gate feeds embeddings and has its own head)."""
    if isinstance(source, str):
        from dllg.experts.loading import load_hf_model

        model = load_hf_model(source, device="cpu", dtype="float32")  # the gate trains in fp32
    else:
        model = source
    decoder = model.get_decoder()
    if layers is not None:
        total = len(decoder.layers)
        if layers > total:
            raise DllgError(
                f"aux_layers={layers} but the aux LM has only {total} layers: use at most {total}"
            )
        decoder.layers = nn.ModuleList(list(decoder.layers)[:layers])
        decoder.config.num_hidden_layers = layers
        if getattr(decoder.config, "layer_types", None):
            decoder.config.layer_types = decoder.config.layer_types[:layers]
    decoder.embed_tokens = nn.Embedding(1, decoder.config.hidden_size)  # never used: inputs_embeds only
    return decoder.float()


@dataclass
class AuxState:
    """The aux LM's decoding cache, the mask over its columns and each row's next position. Every step adds
    a column per new position to every row; a row rolled back masks its last columns (as in HFExpert)."""

    cache: DynamicCache
    mask: torch.Tensor  # (B, columns)
    next_position: torch.Tensor  # (B,)


@register_gate
class AuxLMGate(Gate):
    """Projection -> aux LM with LoRA -> MLP head; a full-rank projection here, low-rank in the subclass."""

    variant = "aux_lm"
    low_rank: ClassVar[bool] = False

    def __init__(self, config: GateConfig, aux_model: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        source = aux_model if aux_model is not None else config.aux_model
        if source is None:
            raise DllgError("the gate needs an aux LM: set gate.aux_model (default: the smallest expert)")
        decoder = load_aux_decoder(source, config.aux_layers)
        for param in decoder.parameters():
            param.requires_grad_(False)
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_targets,
        )
        try:
            self.aux = inject_adapter_in_model(lora, decoder)
        except ValueError as exc:
            raise DllgError(f"cannot put LoRA on the aux LM ({exc}): set gate.lora_targets") from exc
        d_aux = decoder.config.hidden_size
        d_in = sum(config.hidden_sizes)
        rank = config.proj_rank if self.low_rank else None
        self.project = (
            nn.Sequential(nn.Linear(d_in, rank, bias=False), nn.Linear(rank, d_aux))
            if rank
            else nn.Linear(d_in, d_aux)
        )
        self.head = mlp_head(d_aux, config.head_hidden, config.num_experts, config.dropout)

    def new_state(self, batch_size: int) -> AuxState:
        device = self.head[0].weight.device
        return AuxState(
            DynamicCache(config=self.aux.config),
            torch.zeros(batch_size, 0, dtype=torch.long, device=device),
            torch.zeros(batch_size, dtype=torch.long, device=device),
        )

    def select_rows(self, state: AuxState, rows: torch.Tensor) -> AuxState:
        rows = rows.to(self.head[0].weight.device)
        state.cache.batch_select_indices(rows)
        state.mask, state.next_position = state.mask[rows], state.next_position[rows]
        trim_masked_columns(state)
        return state

    @torch.inference_mode()
    def join_rows(self, state: AuxState, other: AuxState) -> AuxState:
        join_masked(state, other)
        return state

    @torch.inference_mode()  # the state's tensors were made while decoding, in inference mode
    def rollback(self, state: AuxState, counts: torch.Tensor) -> None:
        roll_back_masked(state, counts)  # as an expert's cache rolls back

    def scores(
        self, hidden: list[torch.Tensor], attention_mask: torch.Tensor | None, state: Any | None
    ) -> torch.Tensor:
        embeds = self.project(torch.cat(self.norm(hidden), dim=-1))
        batch, length = embeds.shape[:2]
        steps = torch.arange(length, device=embeds.device)
        if state is not None:
            # Decoding: each row at its own position; columns of rolled-back positions are masked out.
            positions = state.next_position[:, None] + steps
            state.mask = torch.cat([state.mask, torch.ones_like(positions)], dim=1)
            out = self.aux(
                inputs_embeds=embeds,
                attention_mask=state.mask,
                position_ids=positions,
                use_cache=True,
                **{cache_argument(type(self.aux)): state.cache},
            )
            state.next_position = state.next_position + length
        else:
            positions = steps.expand(batch, -1)
            # Training: right-padded sequences; padding sits after every real position, so causal
            # attention never lets a real position see it, and padded outputs are masked in the loss.
            out = self.aux(
                inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions, use_cache=False
            )
        return self.head(out.last_hidden_state)
