"""Presets: a set of experts and the gate trained for them, under one name (`--preset NAME`).

A preset stands for `--experts A B --gate G`: the experts are loaded as they would be by name (catalog models
must have been fetched with `dllg models fetch`, which the error says), and the gate is the one trained for
exactly those experts, with the options of rule dllg chosen for it on validation (`options`, e.g. a
sharpening power; a flag given on the command line wins). Plug-ins add presets with `register_preset` when
imported (the synthetic world adds `world`); `dllg models presets` lists them.
"""

from dataclasses import dataclass, field

from dllg.errors import DllgError
from dllg.plugins import load_plugins
from dllg.registry import register_unique


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    experts: tuple[str, ...]
    gate: str  # a gate folder or a name `resolve_path` knows (world:gate)
    fetch: tuple[str, ...] = ()  # catalog models to fetch first: `dllg models fetch ...`
    options: dict[str, object] = field(default_factory=dict)  # rule dllg's options, e.g. {"power": 4}


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if len(preset.experts) < 2:
        count = len(preset.experts)
        raise DllgError(f"preset {preset.name!r} names {count} expert(s): a preset fuses 2 or more")
    from dllg.fusion import rule_options

    takes = [name for name in rule_options("dllg") if name != "gate"]
    unknown = sorted(set(preset.options) - set(takes))
    if unknown:
        given, known = ", ".join(unknown), ", ".join(takes)
        raise DllgError(f"preset {preset.name!r} gives rule dllg option(s) {given}: it takes {known}")
    return register_unique(PRESETS, preset.name, preset, "preset")


def get_preset(name: str) -> Preset:
    load_plugins()
    if name not in PRESETS:
        known = ", ".join(sorted(PRESETS)) or "none"
        raise DllgError(f"no preset called {name!r}: the presets are {known} (see `dllg models presets`)")
    return PRESETS[name]


@dataclass(frozen=True)
class Choice:
    """The experts a command runs and the rule it fuses them with, however the user named them."""

    experts: list[str]
    fusion: str | None
    gate: str | None
    options: dict[str, object] = field(default_factory=dict)  # the preset's options for its gate


def choose_experts(
    experts: list[str] | None,
    preset: str | None,
    fusion: str | None,
    gate: str | None,
    config: object | None = None,
    has_config: bool = False,
) -> Choice:
    """`--experts` as given, or a preset's experts with its gate, or (`config`) none: the run config names
    them. Exactly one of these; `--fusion` other than dllg replaces a preset's gate (to compare a rule on the
    same experts), and a second gate is refused."""
    ways = {"--experts A B": bool(experts), "--preset NAME": preset is not None}
    if has_config:
        ways = {"--config RUN.yaml": config is not None, **ways}
    if sum(ways.values()) != 1:
        raise DllgError(f"name the experts once: give {' or '.join(ways)} (one of them)")
    if preset is None:
        return Choice(list(experts or []), fusion, gate)
    chosen = get_preset(preset)
    if gate is not None:
        raise DllgError(f"--preset {preset} brings its gate: drop --gate (or give --experts with --gate)")
    if fusion not in (None, "dllg"):
        return Choice(list(chosen.experts), fusion, None)
    return Choice(list(chosen.experts), "dllg", chosen.gate, dict(chosen.options))
