"""Run every benchmark at its default size: ``python -m bench`` (or ``make bench``)."""

from bench import feature_store, training, world_generation

world_generation.main([])
feature_store.main([])
training.main([])
