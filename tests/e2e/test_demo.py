"""The whole loop in one command, run as a user runs it: ``closedloop demo``."""

from cli_run import run_cli
from demo_kit import check_demo_output

from actions.backends import open_ledger
from closedloop.settings import Settings
from closedloop.world.store import read_summary


def test_demo_runs_the_loop_and_its_summary_is_the_ledgers(tmp_path, free_port):
    port = {"CLOSEDLOOP_SERVE_PORT": str(free_port())}
    demo = ("demo", "--customers", "1500", "--days", "50")
    result = run_cli(*demo, home=tmp_path, env=port, timeout=1800)  # the whole loop, on 2 cores
    assert result.returncode == 0, result.stderr
    assert read_summary(tmp_path / "world").customers == 1500
    assert "churn v1 via churn_v1" in result.stdout and "(raises the risk)" in result.stdout
    assert list((tmp_path / "predictions" / "churn").glob("part-*.parquet"))
    assert "dirt injected" in result.stdout and "quarantined" in result.stdout
    assert "churn model version 1" in result.stdout and "fault model version 1" in result.stdout
    assert (tmp_path / "metrics" / "train_churn.json").is_file()
    assert "again: 0 new decisions" in result.stdout and "intact" in result.stdout
    assert list((tmp_path / "drift-episode" / "monitoring" / "fault").glob("*/drift.html"))
    for policy in ("no action", "top-k churn score", "uplift (net gain)", "oracle (true effects)"):
        assert policy in result.stdout, f"the net-value table has no row {policy!r}"
    ledger = open_ledger(Settings(home=tmp_path))
    try:
        check_demo_output(result.stdout, result.stderr, ledger)
    finally:
        ledger.close()


def test_demo_refuses_a_world_too_short_to_train_on(tmp_path):
    result = run_cli("demo", "--days", "20", home=tmp_path)
    assert result.returncode == 2 and "too short" in result.stderr
