"""One configuration for every gate variant (the paper's Table 3), validated by pydantic."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GateVariant = Literal["mlp", "cross_attn", "aux_lm", "lowrank_aux_lm"]


class GateConfig(BaseModel):
    """What a gate is; `expert_names` and `hidden_sizes` are filled from the expert pool when it is built."""

    model_config = ConfigDict(extra="forbid")

    variant: GateVariant = "lowrank_aux_lm"
    expert_names: list[str] = Field(default_factory=list)
    hidden_sizes: list[int] = Field(default_factory=list)
    # The backend each expert's states came from in training ("hf", "llamacpp"); empty: not recorded.
    feature_backends: list[str] = Field(default_factory=list)
    normalize: bool = False  # divide the sigmoid weights by their sum (the paper leaves them unnormalised)
    head_hidden: int = Field(256, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # cross_attn
    attn_dim: int = Field(128, ge=1)
    attn_heads: int = Field(4, ge=1)
    # aux_lm / lowrank_aux_lm
    proj_rank: int = Field(64, ge=1)  # lowrank_aux_lm only (paper: 64)
    aux_model: str | None = None  # catalog name, folder or hub id; None: the smallest expert
    aux_layers: int | None = Field(None, ge=1)  # keep only the first N layers of the aux LM
    lora_rank: int = Field(16, ge=1)  # paper: 16
    lora_alpha: float = Field(32.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    @model_validator(mode="after")
    def _check(self) -> "GateConfig":
        if len(self.expert_names) != len(self.hidden_sizes):
            raise ValueError("expert_names and hidden_sizes must have one entry per expert")
        if self.variant == "cross_attn" and self.attn_dim % self.attn_heads:
            raise ValueError(f"attn_dim={self.attn_dim} must be divisible by attn_heads={self.attn_heads}")
        return self

    @property
    def num_experts(self) -> int:
        return len(self.hidden_sizes)
