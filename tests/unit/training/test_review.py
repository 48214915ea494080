"""The review's pure parts: metrics beside the champion's, and the reasons behind a score."""

import numpy as np
import pandas as pd

from training.config import LightGBMParams
from training.review import comparison, top_reasons
from training.trainer import fit


def test_the_comparison_puts_the_champion_beside_and_leaves_it_blank_without_one():
    table = comparison({"pr_auc": 0.3, "roc_auc": 0.8}, {"pr_auc": 0.25, "roc_auc": 0.82})
    assert table.loc["pr_auc", "difference"] == 0.3 - 0.25
    assert table.loc["roc_auc", "champion"] == 0.82
    alone = comparison({"pr_auc": 0.3}, None)
    assert alone["champion"].isna().all() and alone["difference"].isna().all()


def test_the_reasons_name_the_feature_that_drives_a_score_and_its_direction():
    rng = np.random.default_rng(5)
    n = 4000
    frame = pd.DataFrame({"outage": rng.exponential(30, n), "noise": rng.uniform(0, 1, n)})
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-(-4 + 0.06 * frame.outage)))).astype(int)
    model, _ = fit(frame[:3000], frame[3000:], ["outage", "noise"], LightGBMParams(), seed=1)
    rows = pd.DataFrame({"outage": [250.0, 0.0], "noise": [0.5, 0.5]})
    high, low = top_reasons(model, rows, top=1)
    assert high == ["outage = 250 (raises the risk)"]
    assert low == ["outage = 0 (lowers the risk)"]
