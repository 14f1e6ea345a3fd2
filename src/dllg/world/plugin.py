"""The synthetic world as a dllg plug-in (entry point `dllg.plugins`): the `world:NAME` models, gate and
routers shipped in the package, and the tasks world-arith, world-code and world-mixed."""

import dllg.world.assets
import dllg.world.tasks  # noqa: F401 - registers the world's tasks
