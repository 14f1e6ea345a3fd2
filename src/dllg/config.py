"""The one YAML run config (experts, tasks, collect, features, gate, train), validated by pydantic.

CLI flags override fields with `--set section.field=value` (the value is read as YAML).
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dllg.errors import DllgError
from dllg.gate.config import GateConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


LossForm = Literal["per_response", "pooled"]
Precision = Literal["fp32", "bf16"]


class TrainConfig(Strict):
    """Gate training; defaults are the paper's Appendix A where it gives them (steps, batch size)."""

    steps: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(100, ge=1)
    eval_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 0
    loss: LossForm = "per_response"  # the paper's eq. 5; "pooled": every token of the batch counts alike
    # bf16: the gate's forward under bf16 autocast (fp32 master weights and loss); ~4x faster for an aux-LM
    # gate on GPUs and native-bf16 CPUs (AVX512-BF16, AMX), slower where bf16 is emulated (AVX2)
    precision: Precision = "fp32"
    # Run each step's batch in groups of this many answers of similar length (gradients accumulated): the
    # same gradient with less padding, ~2x faster for an aux-LM gate on answers of 50-768 tokens; None: all
    # at once
    micro_batch: int | None = Field(None, ge=1)


class LlamaCppOptions(Strict):
    """The llama.cpp context of one expert (None: the backend's default); see scripts/llamacpp_memory.py."""

    context_tokens: int | None = Field(None, ge=64)  # KV cells for all rows, fixed (default: grow)
    batch_tokens: int | None = Field(None, ge=1)  # tokens per llama_decode; compute buffers scale with it
    cache_type_k: Literal["f16", "q8_0"] | None = None  # q8_0: about half the KV memory; logits change
    cache_type_v: Literal["f16", "q8_0"] | None = None
    # growable memory: one KV stream per sequence (True: less attention work at batch > 1, each stream as
    # long as the longest sequence, slower prefills) or one memory shared by all (False, the default)
    kv_split: bool | None = None
    prompt_cache: str | None = None  # a folder: each prompt's prefill kept and reused (shared memory only)


class ExpertSpec(Strict):
    name: str  # catalog name, SCHEME:NAME (tiny:SEED, world:NAME), local folder, .gguf file, or hub id
    device: str = "auto"
    dtype: str = "auto"
    backend: Literal["hf", "llamacpp"] = "hf"  # llamacpp: a .gguf file or a catalog model's kept GGUF
    placement: Literal["local", "ray"] = "local"  # ray: in its own Ray actor (the cluster: ray.address)
    resources: dict[str, float] = Field(default_factory=dict)  # the actor's: num_cpus, num_gpus, custom
    llamacpp: LlamaCppOptions = Field(default_factory=LlamaCppOptions)  # backend: llamacpp only


class RayConfig(Strict):
    address: str = "local"  # a running cluster ("host:6379", "ray://host:10001"), or local: start one here


class TaskSpec(Strict):
    name: str
    split: str = "train"
    limit: int | None = Field(None, ge=1)
    data: str | None = None  # a local JSONL instead of the task's usual source


class CollectConfig(Strict):
    out: str = "runs/labels.jsonl"
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(8, ge=1)
    temperature: float = Field(0.0, ge=0)
    seed: int = 0
    workers: int = Field(2, ge=1)  # verifier processes in parallel


class FeaturesConfig(Strict):
    dir: str = "runs/features"
    batch_size: int = Field(4, ge=1)
    # The response the experts read under teacher forcing: the task's reference solution, else (or with
    # "rollout") the first correct expert rollout from the label table.
    reference: Literal["task", "rollout"] = "task"
    max_response_tokens: int = Field(1024, ge=1)
    # The backend teacher forcing reads the experts on (None: each expert's own). On a native-bf16 CPU hf
    # (bf16) reads the real pair 2-6x faster than llama.cpp (results/bench/teacher-forcing-backends.txt);
    # a gate trained on one backend's states and served on another warns (the states differ by ~3 %).
    backend: Literal["hf", "llamacpp"] | None = None


class TrainSection(TrainConfig):
    out_dir: str = "runs/gate"
    val_fraction: float = Field(0.1, ge=0, lt=1)


class RunConfig(Strict):
    experts: list[ExpertSpec] = Field(min_length=1)
    tasks: list[TaskSpec] = Field(default_factory=list)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    ray: RayConfig = Field(default_factory=RayConfig)

    def placed_on_ray(self, address: str) -> "RunConfig":
        """The same run with every expert in its own Ray actor on the cluster at `address` (`--ray`)."""
        experts = [e.model_copy(update={"placement": "ray"}) for e in self.experts]
        return self.model_copy(update={"experts": experts, "ray": RayConfig(address=address)})


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise DllgError(f"--set {dotted}: {key} is not a section")
    node[keys[-1]] = value


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate; every problem is one line naming the field."""
    path = Path(path)
    if not path.is_file():
        raise DllgError(f"no such config file {str(path)!r}: see configs/ for examples")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DllgError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise DllgError(f"{path} must hold a mapping (experts:, tasks:, ...)")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise DllgError(f"--set {item!r}: write section.field=value, e.g. --set train.steps=100")
        _set_path(data, key.strip(), yaml.safe_load(raw))
    try:
        return RunConfig(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DllgError(
            f"{path}: {where}: {first['msg']} (got {first.get('input')!r})"
            + (f"; {exc.error_count() - 1} more problem(s)" if exc.error_count() > 1 else "")
        ) from exc


# How each surface spells the arguments that name a gate: the command line, and lm-eval's model_args.
CLI_SPELLING = {
    "gate": "--gate",
    "fusion": "--fusion",
    "fusion_dllg": "--fusion dllg",
    "add_gate": "--gate FOLDER",
    "config": "--config RUN.yaml",
}


def rule_and_gate(
    fusion: str | None, gate: str | None, run: RunConfig | None, spelling: dict[str, str] = CLI_SPELLING
) -> tuple[str, str | None]:
    """The fusion rule a user named and the gate folder it reads: a gate means rule dllg (default rule:
    uniform); rule dllg without a gate reads the one `dllg train` writes for the run config."""
    s = spelling
    if gate is not None:
        if fusion not in (None, "dllg"):
            raise DllgError(
                f"{s['gate']} fuses with rule dllg, not {fusion!r}: drop {s['fusion']} or {s['gate']}"
            )
        return "dllg", str(gate)
    if fusion != "dllg":
        return fusion or "uniform", None
    if run is None:
        raise DllgError(f"{s['fusion_dllg']} needs a trained gate: add {s['add_gate']} (or {s['config']})")
    return "dllg", str(Path(run.train.out_dir) / "gate")
