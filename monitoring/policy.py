"""The retraining trigger: pure rules over this run's findings and the runs before it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from monitoring.config import MonitorConfig
from monitoring.summary import DriftResult, MonitorSummary, Performance, Trigger


def drift_streak(drifted: bool, history: Sequence[MonitorSummary], version: str) -> int:
    """Consecutive drifted windows of this champion, ending with this one (0 if it is calm)."""
    if not drifted:
        return 0
    streak = 1
    for past in sorted(history, key=lambda s: s.window_end, reverse=True):
        if past.champion_version != version or not past.drift.drifted:
            break
        streak += 1
    return streak


def last_retrain(history: Sequence[MonitorSummary]) -> datetime | None:
    """The window end of the latest run that retrained."""
    ends = [s.window_end for s in history if s.retrain is not None and s.retrain.retrained]
    return max(ends, default=None)


def decide(
    drift: DriftResult,
    performance: Performance | None,
    history: Sequence[MonitorSummary],
    version: str,
    window_end: datetime,
    config: MonitorConfig,
) -> Trigger:
    """Retrain when drift persisted or performance fell below the floor, unless too soon."""
    streak = drift_streak(drift.drifted, history, version)
    columns = ", ".join(drift.drifted_columns)
    if streak >= config.persistence:
        status = f"{drift.drifted_share:.0%} of features drifted ({columns}) for {streak} windows"
    elif drift.drifted:
        status = (
            f"{drift.drifted_share:.0%} of features drifted ({columns}): window {streak} of the "
            f"{config.persistence} in a row that trigger"
        )
    else:
        status = f"{drift.drifted_share:.0%} of features drifted, below {drift.drift_share:.0%}"
    breaches = [status] if streak >= config.persistence else []
    if performance is not None and performance.below_floor:
        value = performance.metrics[performance.metric]
        breaches.append(
            f"{performance.metric} {value:.4f} on matured labels is below the floor "
            f"{performance.floor:.4f}"
        )
    if not breaches:
        reasons = [status]
        if performance is not None and performance.below_floor is False:
            reasons.append(f"{performance.metric} on matured labels is above the floor")
        return Trigger(retrain=False, reasons=reasons, drift_streak=streak)
    if status not in breaches:
        breaches.insert(0, status)
    previous = last_retrain(history)
    wait = timedelta(hours=config.min_retrain_interval_hours)
    if previous is not None and window_end - previous < wait:
        return Trigger(
            retrain=False,
            reasons=[
                *breaches,
                f"last retrain at {previous:%Y-%m-%d %H:%M}, less than "
                f"{config.min_retrain_interval_hours:g} h ago: not retraining yet",
            ],
            drift_streak=streak,
        )
    return Trigger(retrain=True, reasons=breaches, drift_streak=streak)


def performance_verdict(
    metrics: dict[str, float],
    champion_test: dict[str, float],
    rows: int,
    positives: int,
    config: MonitorConfig,
) -> Performance:
    """The champion's matured-window metrics against the floor set by its own test figures."""
    policy = config.performance
    judged = rows >= policy.min_rows and positives >= policy.min_positives
    reference = champion_test.get(policy.metric)
    floor = None if reference is None else policy.min_ratio * reference
    below = None
    if judged and floor is not None:
        below = bool(metrics[policy.metric] < floor)
    return Performance(
        rows=rows,
        positives=positives,
        metrics=metrics,
        champion_test=champion_test,
        metric=policy.metric,
        floor=floor,
        below_floor=below,
    )
