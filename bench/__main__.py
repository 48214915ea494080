"""Run every benchmark: ``python -m bench`` (or ``make bench``)."""

from bench import world_generation

world_generation.main()
