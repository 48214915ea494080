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


def _performance_streak(below: bool, history: Sequence[MonitorSummary], version: str) -> int:
    """Consecutive runs of this champion below the floor, ending with this one."""
    if not below:
        return 0
    streak = 1
    for past in sorted(history, key=lambda s: s.window_end, reverse=True):
        performance = past.performance
        if past.champion_version != version or not (performance and performance.below_floor):
            break
        streak += 1
    return streak


def _held_in_streak(history: Sequence[MonitorSummary], version: str, streak: int) -> bool:
    """Whether a run of the current drift streak already triggered and was held."""
    recent = sorted(history, key=lambda s: s.window_end, reverse=True)[: max(streak - 1, 0)]
    return any(s.champion_version == version and s.trigger.held for s in recent)


def decide(
    drift: DriftResult,
    performance: Performance | None,
    history: Sequence[MonitorSummary],
    version: str,
    window_end: datetime,
    config: MonitorConfig,
) -> Trigger:
    """Retrain on evidence, unless too soon.

    - drift whose period the matured labels already cover (``matured_days`` of labels since it
      began): the labels decide, retrain when the metric is below the floor;
    - drift that persisted ``persistence`` windows before its labels are known: triggered, and
      held until they cover it (a model trained on what came before cannot learn the change),
      then retrained;
    - no drift, the metric below the floor for ``persistence`` runs in a row: retrain.
    """
    streak = drift_streak(drift.drifted, history, version)
    columns = ", ".join(drift.drifted_columns)
    prediction = drift.prediction is not None and drift.prediction.drifted
    what = f"{drift.drifted_share:.0%} of compared features drifted ({columns or 'none'})"
    if drift.severe:
        what += f", {', '.join(drift.severe)} at {config.drift.severe:g}x its threshold or more"
    if prediction:
        what += f", and the prediction ({drift.prediction.score:.3f})"
    judged = performance is not None and performance.below_floor is not None
    below = bool(judged and performance.below_floor)
    onset = window_end - timedelta(days=config.window_days * streak)
    covered = (
        streak > 0
        and judged
        and performance.matured_until is not None
        and performance.matured_until - onset >= timedelta(days=config.matured_days)
    )
    floor = ""
    if judged:
        value = performance.metrics[performance.metric]
        relation = "below" if below else "above"
        floor = f"{performance.metric} {value:.4f} on matured labels, {relation} the floor " + (
            f"{performance.floor:.4f}"
        )

    if not drift.drifted:
        status = f"{what}: below {drift.drift_share:.0%}"
        if below and _performance_streak(True, history, version) >= config.persistence:
            return _unless_too_soon(
                [status, f"{floor} for {config.persistence} runs in a row"],
                streak,
                history,
                window_end,
                config,
            )
        return Trigger(
            retrain=False, reasons=[status, *([floor] if floor else [])], drift_streak=streak
        )

    since = f"{what}, {streak} window(s) in a row since {onset:%Y-%m-%d}"
    if covered and (below or _held_in_streak(history, version, streak)):
        reasons = [since, floor if below else "held until its labels matured: they have"]
        return _unless_too_soon(reasons, streak, history, window_end, config)
    if covered:
        return Trigger(
            retrain=False,
            reasons=[since, f"{floor}: the drift has not hurt the model"],
            drift_streak=streak,
        )
    if streak >= config.persistence:
        return Trigger(
            retrain=False,
            held=True,
            reasons=[
                since,
                f"retraining held until labels cover {config.matured_days:g} days since "
                f"{onset:%Y-%m-%d} (a model trained on what came before cannot learn it)",
            ],
            drift_streak=streak,
        )
    return Trigger(
        retrain=False,
        reasons=[since + f": {config.persistence} in a row, or labels below the floor, trigger"],
        drift_streak=streak,
    )


def _unless_too_soon(
    breaches: list[str],
    streak: int,
    history: Sequence[MonitorSummary],
    window_end: datetime,
    config: MonitorConfig,
) -> Trigger:
    previous = last_retrain(history)
    wait = timedelta(hours=config.min_retrain_interval_hours)
    if previous is not None and window_end - previous < wait:
        return Trigger(
            retrain=False,
            held=True,
            reasons=[
                *breaches,
                f"last retrain at {previous:%Y-%m-%d %H:%M}, less than "
                f"{config.min_retrain_interval_hours:g} h ago: not retraining yet",
            ],
            drift_streak=streak,
        )
    return Trigger(retrain=True, reasons=breaches, drift_streak=streak)


def live_baseline(history: Sequence[MonitorSummary], version: str) -> Performance | None:
    """The first judged matured window of this champion: the level the floor is set from."""
    for past in sorted(history, key=lambda s: s.window_end):
        judged = past.performance is not None and past.performance.below_floor is not None
        if past.champion_version == version and judged:
            return past.performance
    return None


def performance_verdict(
    metrics: dict[str, float],
    champion_test: dict[str, float],
    rows: int,
    positives: int,
    config: MonitorConfig,
    matured_until: datetime | None = None,
    baseline: Performance | None = None,
    classes: Sequence[str] = (),
) -> Performance:
    """The champion's matured-window metrics against the floor: ``min_ratio`` of the lower of
    its test metric and its metric on its first judged matured window (``baseline``; this one
    when there is none yet). Either alone misleads: a churn label spans 30 days, so a customer
    who leaves is a positive in several weekly snapshots on both sides of the test split and the
    test metric flatters; one week of a few dozen positives may be a lucky one. A multi-class
    champion (``classes``) is held to ``class_metric``, ``positives`` being the rows of its
    rarest class."""
    policy = config.performance
    metric = policy.class_metric if classes else policy.metric
    judged = rows >= policy.min_rows and positives >= policy.min_positives
    if baseline is not None:
        live, since = baseline.metrics.get(metric), baseline.matured_until
    else:
        live, since = (metrics[metric] if judged else None), matured_until
    levels = [v for v in (champion_test.get(metric), live) if v is not None]
    floor = policy.min_ratio * min(levels) if levels else None
    below = None
    if judged and floor is not None:
        below = bool(metrics[metric] < floor)
    return Performance(
        rows=rows,
        positives=positives,
        metrics=metrics,
        champion_test=champion_test,
        metric=metric,
        classes=list(classes),
        floor=floor,
        baseline_until=since if live is not None else None,
        below_floor=below,
        matured_until=matured_until,
    )
