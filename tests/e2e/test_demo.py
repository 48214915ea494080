"""The whole loop in one command, run as a user runs it: ``closedloop demo``."""

from cli_run import run_cli

from closedloop.world.store import read_summary


def test_demo_generates_a_world_and_summarises_it(tmp_path, free_port):
    port = {"CLOSEDLOOP_SERVE_PORT": str(free_port())}
    result = run_cli("demo", "--customers", "1500", "--days", "50", home=tmp_path, env=port)
    assert result.returncode == 0, result.stderr
    assert read_summary(tmp_path / "world").customers == 1500
    stages = (
        "1. world",
        "2. ingest",
        "3. features",
        "4. training",
        "5. serving",
        "6. actions",
        "7. monitoring",
    )
    for stage in stages:
        assert stage in result.stdout
    assert "churn v1 via churn_v1" in result.stdout and "(raises the risk)" in result.stdout
    assert list((tmp_path / "predictions" / "churn").glob("part-*.parquet"))
    assert "dirt injected" in result.stdout and "quarantined" in result.stdout
    assert "churn model version 1" in result.stdout and "fault model version 1" in result.stdout
    assert (tmp_path / "metrics" / "train_churn.json").is_file()
    for title in ("actions in the ledger", "suppressed by guard", "waiting for approval"):
        assert title in result.stdout
    assert "again: 0 new decisions" in result.stdout and "intact" in result.stdout
    assert "evidently ui --workspace" in result.stdout
    assert "closedloop console" in result.stdout and "/console/" in result.stdout
    assert "mlflow ui --backend-store-uri" in result.stdout
    assert list((tmp_path / "drift-episode" / "monitoring" / "fault").glob("*/drift.html"))


def test_demo_refuses_a_world_too_short_to_train_on(tmp_path):
    result = run_cli("demo", "--days", "20", home=tmp_path)
    assert result.returncode == 2 and "too short" in result.stderr
