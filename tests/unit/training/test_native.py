import numpy as np
import pandas as pd

from training.config import LightGBMParams
from training.native import (
    NATIVE_MIN_ROWS,
    Engine,
    NativeScorer,
    batch_scores,
    compiled_folder,
    engine_for,
)
from training.trainer import fit


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "outage": rng.exponential(30, n),
            "tenure": rng.uniform(0, 60, n),
            "plan": rng.choice(["a", "b", "c"], n),
        }
    )
    logit = -2 + 0.04 * frame.outage - 0.05 * frame.tenure + (frame.plan == "b") * 1.0
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def test_compiled_trees_score_as_lightgbm_does_and_are_cached(tmp_path):
    features = ["outage", "tenure", "plan"]
    model, _ = fit(
        _frame(4000, 1), _frame(2000, 2), features, LightGBMParams(num_boost_round=60), seed=1
    )
    batch = _frame(3000, 3)[features]
    batch.loc[::7, "outage"] = np.nan  # missing numbers
    batch.loc[::11, "plan"] = None  # missing levels
    batch.loc[::13, "plan"] = "z"  # a level training never saw

    native = NativeScorer(model, tmp_path)

    np.testing.assert_allclose(native.score(batch), model.score(batch), rtol=0, atol=1e-9)
    library = compiled_folder(tmp_path, model) / "forest.so"
    assert library.stat().st_size > 0
    built = library.stat().st_mtime_ns
    again = NativeScorer(model, tmp_path)
    assert library.stat().st_mtime_ns == built, "a second scorer reuses the compiled forest"
    np.testing.assert_array_equal(again.score(batch, threads=1), native.score(batch))


def test_batch_scores_take_the_compiled_forest_by_row_count_with_the_same_answers(tmp_path):
    features = ["outage", "tenure", "plan"]
    model, _ = fit(
        _frame(4000, 1), _frame(2000, 2), features, LightGBMParams(num_boost_round=40), seed=1
    )
    batch = _frame(1000, 4)[features]
    assert engine_for(NATIVE_MIN_ROWS) is Engine.COMPILED
    assert engine_for(NATIVE_MIN_ROWS - 1) is Engine.LIGHTGBM

    small, engine = batch_scores(model, batch, tmp_path, native_from=1001)
    assert engine is Engine.LIGHTGBM
    assert not compiled_folder(tmp_path, model).exists(), "a small batch compiles nothing"
    large, engine = batch_scores(model, batch, tmp_path, native_from=1000)
    assert engine is Engine.COMPILED
    assert (compiled_folder(tmp_path, model) / "forest.so").exists()
    np.testing.assert_allclose(large, small, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(small, model.score(batch, threads=2))
