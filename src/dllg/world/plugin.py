"""The synthetic world as a dllg plug-in (entry point `dllg.plugins`): the `world:NAME` models, gate and
routers shipped in the package, the tasks world-arith, world-code and world-mixed, and the preset `world`."""

import dllg.world.assets
import dllg.world.tasks  # noqa: F401 - registers the world's tasks
from dllg.presets import Preset, register_preset

register_preset(
    Preset(
        name="world",
        description="the synthetic world's arithmetic and code experts with their trained gate (no fetch)",
        experts=("world:arith", "world:code"),
        gate="world:gate",
    )
)
