"""Decision value: the backtest table over several world seeds, and what a backtest costs.

    python -m bench.value [--customers 5000] [--seeds 5] [--days 90] [--window 30] [--learner r]

For each seed: a world of CUSTOMERS (no files written: simulated in memory, as the backtest
re-simulates it), an uplift learner (ratio by default, or T, X) fitted on the randomised trials
before the window (in process, not registered), then ``actions.backtest.backtest`` over the
last WINDOW days with the packaged default policy at its default budget (what the shipped
policy spends); as a peer without features, the same backtest with every customer given the
learning trials' average rates (its uplift row). Prints per policy the mean ± sd over seeds of
net value, churn prevented, contacted, harmed and budget used, the issue's targets (uplift ≥
1.5× the score-only net value and ≥ 0.7× the oracle's, fewer harmed than score-only), the
uplift policy over its peer, how well the uplift model's churn (control) classifier and the
world's own hazards rank the window's leavers, and the seconds each step took. ``--customers
20000`` is the issue's size for the ≤ 60 s backtest target. The upsell model (fitted in process
on the upgrade offers logged before the window) ranks the upgrade offers the window's usage
spikes trigger; the upsell rows (the policy's upgrade rule, an offer at every trigger as the
peer without a model, the oracle of true chances) are printed in a table of their own with the
upsell row over its peer and over the oracle, and the model's held-out ROC AUC.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from actions.backtest import (
    ORACLE,
    SCORE_ONLY,
    UPLIFT,
    UPSELL,
    UPSELL_ALL,
    UPSELL_ORACLE,
    Estimates,
    Window,
    backtest,
)
from actions.policy import load_policy
from closedloop.world import catalog
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate_truth
from closedloop.world.treatment import TreatmentLog, left_within
from closedloop.world.upgrade import upsell_observed
from training.uplift import ARMS, LEARNER_NAMES, UpliftConfig, fit_uplift, held_out_qini, trial_logs
from training.upsell import UpsellConfig, fit_upsell, held_out_metrics, offer_logs

PEER = "uplift, trial averages (peer)"
UPSELL_COLUMNS = ("net_value", "expected_net_value", "contacted")
COLUMNS = (
    "net_value",
    "expected_net_value",
    "churn_prevented",
    "contacted",
    "harmed",
    "budget_used",
)


def _spread(values: list[float], digits: int = 1) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:,.{digits}f} ± {sd:,.{digits}f}"


def trial_averages(learn: TreatmentLog, customers: int) -> Estimates:
    """The peer without features: every customer given the learning trials' control leaving
    rate as churn score and each arm's average effect as uplift."""
    rate = {arm: learn.left[learn.arm == arm].mean() for arm in np.unique(learn.arm)}
    return Estimates(
        churn=np.full(customers, rate[-1]),
        uplift={
            arm: np.full(customers, rate[-1] - rate[catalog.ACTIONS.index(arm)]) for arm in ARMS
        },
    )


def _row(result, name: str):
    return next(row for row in result.rows if row.policy == name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.value", description=__doc__)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--window", type=int, default=30, help="days backtested, at the end")
    parser.add_argument("--learner", choices=("r", "t", "x"), default="r", help="uplift learner")
    args = parser.parse_args(argv)
    policy, config = load_policy(None), UpliftConfig(learner=args.learner)
    upsell_config = UpsellConfig()
    upsell: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    window = Window(args.days - args.window, args.days - 1)
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    qinis: dict[str, list[float]] = defaultdict(list)
    seconds: dict[str, list[float]] = defaultdict(list)
    aucs: dict[str, list[float]] = defaultdict(list)  # who leaves in the window, ranked by
    for seed in range(1, args.seeds + 1):
        t0 = time.perf_counter()
        truth = simulate_truth(WorldConfig(customers=args.customers, days=args.days, seed=seed))
        t1 = time.perf_counter()
        learn, held = trial_logs(truth, window.start, config)
        model = fit_uplift(learn, config)
        for name, value in held_out_qini(model, held).items():
            qinis[name].append(value)
        offers, held_offers = offer_logs(truth, window.start, upsell_config)
        upsell_model = fit_upsell(offers, upsell_config)
        qinis["upsell ROC AUC (held-out offers)"].append(
            held_out_metrics(upsell_model, held_offers)["roc_auc"]
        )
        features = upsell_observed(truth, window.start)
        estimates = Estimates(
            churn=model.churn(features),
            uplift=model.uplift(features),
            upsell=upsell_model.expected_gain(features),
        )
        present = truth.churn.active(args.days)[:, window.start]
        leavers = left_within(truth.churn, window.start, window.end)[present]
        hazard = truth.hazard[:, window.start : window.end + 1].sum(axis=1)[present]
        aucs["churn (control) model"].append(roc_auc_score(leavers, estimates.churn[present]))
        aucs["the world's own hazards"].append(roc_auc_score(leavers, hazard))
        t2 = time.perf_counter()
        result = backtest(truth, policy, window, estimates)
        t3 = time.perf_counter()
        seconds["simulate world"].append(t1 - t0)
        seconds["trials + fit uplift and upsell"].append(t2 - t1)
        seconds["backtest (6 rows, 3 upsell rows)"].append(t3 - t2)
        for row in result.rows:
            for column in COLUMNS:
                rows[row.policy][column].append(getattr(row, column))
        rows["(budget USD)"]["net_value"].append(result.budget)
        for row in result.upsell:
            for column in (*UPSELL_COLUMNS, "cost"):
                upsell[row.policy][column].append(getattr(row, column))
        flat = backtest(truth, policy, window, trial_averages(learn, len(features)), result.budget)
        for column in COLUMNS:
            rows[PEER][column].append(getattr(_row(flat, UPLIFT), column))

    console = Console(width=150)
    table = Table(
        title=f"backtest of the last {args.window} days, {args.customers:,} customers, "
        f"{args.seeds} seeds (mean ± sd), default policy's budget"
    )
    table.add_column("policy")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    for name, values in rows.items():
        if name.startswith("("):
            continue
        table.add_row(name, *(_spread(values[c]) for c in COLUMNS))
    console.print(table)
    console.print(f"budget per seed: {_spread(rows['(budget USD)']['net_value'])} USD")
    table = Table(
        title="upgrade offers at the window's usage spikes (mean ± sd over seeds; net value: "
        "MRR gained × value months − cost)"
    )
    table.add_column("policy")
    for column in (*UPSELL_COLUMNS, "cost"):
        table.add_column(column.replace("_", " "), justify="right")
    for name, values in upsell.items():
        table.add_row(name, *(_spread(values[c]) for c in (*UPSELL_COLUMNS, "cost")))
    console.print(table)
    for column in ("net_value", "expected_net_value"):
        ours, peer, oracle = (
            statistics.fmean(upsell[n][column]) for n in (UPSELL, UPSELL_ALL, UPSELL_ORACLE)
        )
        console.print(
            f"upsell {column.replace('_', ' ')}: {ours:,.0f} / every trigger {peer:,.0f} = "
            f"{ours / peer:.3f}×; / oracle {oracle:,.0f} = {ours / oracle:.3f}×"
        )
    qini_table = Table(
        title=f"uplift {LEARNER_NAMES[args.learner]} on the held-out trial, upsell on the "
        "held-out offers (mean ± sd over seeds)"
    )
    qini_table.add_column("metric")
    qini_table.add_column("value", justify="right")
    for name, values in qinis.items():
        mean, sd = statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0
        qini_table.add_row(name, f"{mean:.5f} ± {sd:.5f}")
    console.print(qini_table)
    for column in ("net_value", "expected_net_value"):
        net = {n: statistics.fmean(rows[n][column]) for n in (UPLIFT, SCORE_ONLY, ORACLE)}
        what = column.replace("_", " ")
        for text, met in (
            (
                f"uplift {what} {net[UPLIFT]:,.0f} ≥ 1.5 × score-only {net[SCORE_ONLY]:,.0f}",
                net[UPLIFT] >= 1.5 * net[SCORE_ONLY] and net[UPLIFT] > 0,
            ),
            (
                f"uplift {what} {net[UPLIFT]:,.0f} ≥ 0.7 × oracle {net[ORACLE]:,.0f}",
                net[UPLIFT] >= 0.7 * net[ORACLE],
            ),
        ):
            console.print(f"target: {text}: {'[green]met[/]' if met else '[red]not met[/]'}")
    for column in ("net_value", "expected_net_value"):
        ours, peer = (statistics.fmean(rows[n][column]) for n in (UPLIFT, PEER))
        console.print(
            f"uplift {column.replace('_', ' ')} over the peer without features: "
            f"{ours:,.0f} / {peer:,.0f} = {ours / peer:.2f}×"
        )
    harmed = {name: statistics.fmean(rows[name]["harmed"]) for name in (UPLIFT, SCORE_ONLY)}
    met = harmed[UPLIFT] < harmed[SCORE_ONLY]
    console.print(
        f"target: uplift harmed {harmed[UPLIFT]:.1f} < score-only harmed "
        f"{harmed[SCORE_ONLY]:.1f}: {'[green]met[/]' if met else '[red]not met[/]'}"
    )
    for name, values in aucs.items():
        console.print(f"ROC AUC of the window's leavers ranked by {name}: {_spread(values, 3)}")
    for step, values in seconds.items():
        console.print(f"{step}: {_spread(values)} s per seed")
    slowest = max(seconds["backtest (6 rows, 3 upsell rows)"])
    console.print(
        f"target: the slowest seed's backtest {slowest:.1f} s ≤ 60 s at {args.customers:,} "
        f"customers: {'[green]met[/]' if slowest <= 60 else '[red]not met[/]'} (load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
