"""Run every benchmark at its default size: ``python -m bench`` (or ``make bench``)."""

from bench import (
    actions,
    console,
    delivery_faults,
    feature_store,
    last_good,
    load,
    monitoring,
    real_data,
    serving,
    training,
    value,
    world_generation,
)

world_generation.main([])
feature_store.main([])
training.main([])
serving.main([])
last_good.main([])
real_data.main([])
actions.main([])
console.main([])
load.main([])
delivery_faults.main([])
monitoring.main([])
value.main([])
