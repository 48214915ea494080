"""``closedloop train-uplift``, ``train-upsell`` and ``policy backtest`` as a user runs them."""

import json

from cli_run import run_cli


def test_uplift_and_upsell_are_registered_and_the_backtest_ranks_by_them(tmp_path):
    home = tmp_path / "home"
    world = ("world", "generate", "--customers", "1000", "--days", "90", "--seed", "4")
    assert run_cli(*world, home=home).returncode == 0
    trained = run_cli("train-uplift", "--before", "2026-03-02", home=home)
    assert trained.returncode == 0, trained.stderr
    assert "qini_message" in trained.stdout and "uplift model version 1" in trained.stdout

    upsell = run_cli("train-upsell", "--before", "2026-03-02", home=home)
    assert upsell.returncode == 0, upsell.stderr
    assert "roc_auc" in upsell.stdout and "upsell model version 1" in upsell.stdout

    listed = run_cli("models", "list", home=home)
    assert "uplift" in listed.stdout and "upsell" in listed.stdout
    versions = json.loads(run_cli("models", "list", "--json", home=home).stdout)
    assert [(v["name"], v["version"]) for v in versions] == [("uplift", "1"), ("upsell", "1")]
    assert any(name.startswith("test_qini") for name in versions[0]["metrics"])
    assert "test_roc_auc" in versions[1]["metrics"]

    out = run_cli(
        "policy", "backtest", "actions/policies/default.yaml",
        "--window", "2026-03-02..2026-03-31", "--json", home=home,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    names = [row["policy"] for row in result["rows"]]
    assert names[0] == "no action" and names[-1] == "clairvoyant (outcomes known)"
    assert {"uplift (net gain)", "oracle (true effects)"} <= set(names)
    ceiling = result["rows"][-1]
    assert all(row["net_value"] <= ceiling["net_value"] for row in result["rows"])
    assert all(row["cost"] <= result["budget"] + 1e-6 for row in result["rows"])
    promoted = "promoted to champion" in trained.stdout
    expected = "uplift champion version 1" if promoted else "fitted on the trials"
    assert expected in result["models"]
    promoted = "promoted to champion" in upsell.stdout
    expected = "upsell champion version 1" if promoted else "upsell fitted on the offers"
    assert expected in result["models"]
    offers = {row["policy"]: row for row in result["upsell"]}
    assert list(offers) == ["upsell", "upsell, every trigger", "upsell oracle (true chances)"]
    assert offers["upsell"]["contacted"] <= offers["upsell, every trigger"]["contacted"]
    assert offers["upsell, every trigger"]["contacted"] > 0

    table = run_cli(
        "policy", "backtest", "actions/policies/default.yaml",
        "--window", "2026-03-02..2026-03-31", "--budget", "50", home=home,
    )  # fmt: skip
    assert table.returncode == 0 and "budget 50.00 USD" in table.stdout
    assert "upgrade offers at the window's usage spikes" in table.stdout


def test_a_window_outside_the_world_is_one_red_line(tmp_path):
    home = tmp_path / "home"
    assert (
        run_cli("world", "generate", "--customers", "300", "--days", "30", home=home).returncode
        == 0
    )
    out = run_cli(
        "policy", "backtest", "actions/policies/default.yaml",
        "--window", "2026-01-10..2026-03-01", home=home,
    )  # fmt: skip
    assert out.returncode == 2 and "must lie within" in out.stderr
    assert "Traceback" not in out.stderr
    missing = run_cli(
        "policy", "backtest", "actions/policies/default.yaml", "--window", "x..y",
        home=tmp_path / "empty",
    )  # fmt: skip
    assert missing.returncode == 2 and "no world" in missing.stderr
