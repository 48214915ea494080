"""What a synthetic world looks like: size, seed, rates and the dirt injected into raw data."""

from __future__ import annotations

from datetime import date
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Strict):
    """An inclusive range a realised rate must fall into."""

    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise ValueError(f"band low {self.low} is above high {self.high}")
        return self

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


class Dirt(_Strict):
    """Imperfections written into raw telemetry and events, as real networks produce them."""

    missing_rate: float = Field(0.01, ge=0, le=0.5, description="intervals never reported")
    outage_silence_rate: float = Field(
        0.5, ge=0, le=1, description="fully-down intervals whose site cannot report at all"
    )
    duplicate_rate: float = Field(0.005, ge=0, le=0.5, description="records sent twice")
    late_rate: float = Field(0.02, ge=0, le=0.5, description="records arriving hours late")
    max_late_hours: float = Field(48, gt=1, description="latest a late record arrives")
    spike_rate: float = Field(0.001, ge=0, le=0.1, description="records with an out-of-range value")
    unit_glitch_rate: float = Field(
        0.003, ge=0, le=0.2, description="cell-days reported in the wrong unit"
    )
    counter_resets: bool = Field(True, description="cumulative counters restart after a reboot")
    flapping_rate: float = Field(0.3, ge=0, le=1, description="alarms raised more than once")
    lost_clear_rate: float = Field(0.02, ge=0, le=1, description="alarm clears never sent")

    @classmethod
    def clean(cls) -> Dirt:
        """No dirt at all: every record arrives once, on time, in range."""
        return cls(
            missing_rate=0,
            outage_silence_rate=0,
            duplicate_rate=0,
            late_rate=0,
            spike_rate=0,
            unit_glitch_rate=0,
            counter_resets=False,
            flapping_rate=0,
            lost_clear_rate=0,
        )


class FirmwareUpdate(_Strict):
    """From ``day`` on, one vendor's cells report KPIs in new units (a drift scenario)."""

    vendor: Literal["aurora", "zenith"] = "aurora"
    day: int = Field(ge=0, description="first day (from the world's start) of the new firmware")
    latency_factor: float = Field(
        10.0, gt=0, description="reported latency over true latency (10: units of 0.1 ms)"
    )
    loss_factor: float = Field(
        1.0, gt=0, description="reported packet loss over true loss (aurora gauge)"
    )


class PriceChange(_Strict):
    """From ``day`` on, every customer of one region pays ``factor`` times their price, announced
    in the inventory (``new_mrr``, ``new_mrr_from``); price-sensitive customers answer the rise
    by leaving more (a drift scenario)."""

    region: Literal["metro-east", "east-rural", "central", "mountain", "metro-west"] = "central"
    day: int = Field(ge=0, description="first day (from the world's start) of the new price")
    factor: float = Field(1.25, gt=0, description="new price over old")


class Drift(_Strict):
    """Changes that start part-way through a world, for monitoring to find (none by default)."""

    firmware: FirmwareUpdate | None = None
    price: PriceChange | None = None


class WorldConfig(_Strict):
    """Everything that shapes a generated world; the same config and seed give the same files."""

    customers: int = Field(10_000, ge=50, le=5_000_000)
    days: int = Field(90, ge=7, le=730)
    seed: int = Field(42, ge=0)
    start: date = date(2026, 1, 1)
    interval_minutes: int = Field(15, description="telemetry reporting period")
    customers_per_cell: int = Field(200, ge=10)
    incident_rate: float = Field(
        0.015, ge=0, le=1, description="incidents starting per cell per day"
    )
    usage_spike_rate: float = Field(0.004, ge=0, le=1, description="usage spikes per cell per day")
    monthly_churn_rate: float = Field(0.02, gt=0, lt=0.5, description="target churn per 30 days")
    churn_band: Band = Field(
        Band(low=0.012, high=0.03), description="realised churn per 30 days must fall here"
    )
    incident_band: Band = Field(
        Band(low=0.008, high=0.025), description="realised incidents per cell-day must fall here"
    )
    dirt: Dirt = Dirt()
    drift: Drift = Drift()

    @model_validator(mode="after")
    def _interval_divides_day(self) -> Self:
        if 1440 % self.interval_minutes:
            raise ValueError(
                f"interval_minutes={self.interval_minutes} must divide a day (1440 minutes)"
            )
        return self

    @property
    def intervals_per_day(self) -> int:
        return 1440 // self.interval_minutes

    @property
    def cells(self) -> int:
        """Cells in the world: one per ``customers_per_cell`` customers, at least eight."""
        return max(8, -(-self.customers // self.customers_per_cell))
