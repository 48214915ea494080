"""Every model input has the traits monitoring needs, matching the window its name states."""

import re
from datetime import timedelta
from pathlib import Path

from features.repo import TRAITS, FeaturePaths, Kind, feature_repo, service_features


def test_every_input_of_every_service_has_traits_and_its_named_window():
    paths = FeaturePaths(Path("/d.parquet"), Path("/h.parquet"), Path("/t"), Path("/a"))
    repo = feature_repo(paths)
    for service in repo.services.values():
        for name in service_features(service):
            assert name in TRAITS, f"{name} has no monitoring traits"
            found = re.search(r"_(\d+)([dh])$", name)
            if found and TRAITS[name].kind is not Kind.CLOCK:
                unit = timedelta(days=1) if found[2] == "d" else timedelta(hours=1)
                window = int(found[1]) * unit
                assert TRAITS[name].history in (window, timedelta(0)) or window == unit
                if window > unit:
                    assert TRAITS[name].history == window, name


def test_clocks_move_the_way_the_calendar_does():
    assert TRAITS["tenure_months"].per_day > 0 and TRAITS["tenure_months"].floor is None
    left = TRAITS["contract_months_left"]
    assert left.per_day < 0 and left.floor == 0
