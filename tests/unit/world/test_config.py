import pytest
from pydantic import ValidationError

from closedloop.world.config import Band, Dirt, WorldConfig


def test_interval_must_divide_a_day():
    with pytest.raises(ValidationError, match="must divide a day"):
        WorldConfig(interval_minutes=7)
    assert WorldConfig(interval_minutes=60).intervals_per_day == 24


def test_band_must_be_ordered_and_contains_its_edges():
    with pytest.raises(ValidationError, match="above high"):
        Band(low=0.3, high=0.1)
    band = Band(low=0.1, high=0.3)
    assert 0.1 in band and 0.3 in band and 0.31 not in band


def test_cells_follow_customers_with_a_floor():
    assert WorldConfig(customers=100).cells == 8
    assert WorldConfig(customers=100_000, customers_per_cell=200).cells == 500
    assert WorldConfig(customers=100_001, customers_per_cell=200).cells == 501


def test_clean_dirt_has_no_imperfection():
    clean = Dirt.clean()
    rates = {k: v for k, v in clean.model_dump().items() if isinstance(v, float)}
    assert all(v == 0 for k, v in rates.items() if k != "max_late_hours")
    assert clean.counter_resets is False


def test_unknown_world_option_is_rejected():
    with pytest.raises(ValidationError, match="subscribers"):
        WorldConfig(subscribers=10)
