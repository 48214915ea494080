"""A multi-class champion answers each class's probability, the likeliest class and the
reasons for that class."""

import numpy as np
import pandas as pd

from features.online import ServiceLayout, ViewLayout
from serving.champion import Champion
from serving.scoring import Scorer
from training.config import LightGBMParams
from training.trainer import fit

CLASSES = ["competitor", "price", "stayed"]


class OneChampion:
    def __init__(self, champion: Champion) -> None:
        self.champion = champion

    def get(self, name: str) -> Champion | None:
        return self.champion if name == self.champion.name else None


class NoReads:
    layout = ServiceLayout(
        "churn_reasons_v1",
        "customer_id",
        (ViewLayout("reasons", "t", 0, ("charge", "offer"), ("monthly charge", "offer")),),
    )


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.choice(3, rows, p=[0.3, 0.2, 0.5])
    return pd.DataFrame(
        {
            "charge": rng.normal(60, 10, rows) + 30 * (label == 1),
            "offer": np.where(rng.random(rows) < 0.1 + 0.8 * (label == 0), "A", "B"),
            "label": label,
        }
    )


def test_class_probabilities_and_reasons_for_the_likeliest_class():
    params = LightGBMParams(num_boost_round=100, early_stopping_rounds=10, min_child_samples=10)
    model, _ = fit(_frame(600, 1), _frame(200, 2), ["charge", "offer"], params, 7, (), CLASSES)
    champion = Champion("churn", "4", "churn_reasons_v1", model, "registry")
    scorer = Scorer(OneChampion(champion), {"churn_reasons_v1": NoReads()})
    rows = [{"charge": 95.0, "offer": "B"}, {"charge": 55.0, "offer": "A"}]
    scored = scorer.supplied("churn", rows, top=2)
    dear, tempted = scored.scores
    for score in scored.scores:
        assert list(score.classes) == CLASSES
        assert abs(sum(score.classes.values()) - 1) < 1e-9
        assert score.predicted_class == max(score.classes, key=score.classes.get)
        assert score.probability == score.classes[score.predicted_class]
    assert dear.predicted_class == "price" and tempted.predicted_class == "competitor"
    assert dear.reasons[0].feature == "charge" and dear.reasons[0].direction == "raises"
    assert tempted.reasons[0].feature == "offer" and tempted.reasons[0].direction == "raises"
    assert scored.log.probabilities == [dear.probability, tempted.probability]
