"""The synthetic mixed-skill world's tasks (world-arith, world-code, world-mixed), from dllg.world."""

import dllg.world.tasks  # noqa: F401
