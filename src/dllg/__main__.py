"""`python -m dllg ...`: the CLI, as `dllg ...` (what shard tasks on Ray workers run)."""

from dllg.cli.main import main

main()
