"""The fixed facts of the simulated operator: regions, vendors, segments, plans and fault kinds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    name: str
    timezone: str
    share: float  # of customers
    urban: float  # 0..1, raises cell load
    competitor_pressure: float  # baseline 0..1
    vendor: str  # the vendor most of its cells come from


REGIONS: tuple[Region, ...] = (
    Region("metro-east", "America/New_York", 0.30, 0.9, 0.35, "aurora"),
    Region("east-rural", "America/New_York", 0.12, 0.3, 0.15, "aurora"),
    Region("central", "America/Chicago", 0.22, 0.6, 0.25, "aurora"),
    Region("mountain", "America/Denver", 0.11, 0.4, 0.20, "zenith"),
    Region("metro-west", "America/Los_Angeles", 0.25, 0.9, 0.40, "zenith"),
)
VENDORS: tuple[str, ...] = ("aurora", "zenith")
OTHER_VENDOR_SHARE = 0.15  # cells of a region bought from the other vendor

TECHNOLOGIES: tuple[str, ...] = ("lte", "nr")

SEGMENTS: tuple[str, ...] = ("consumer", "smb", "enterprise")
SEGMENT_SHARE = np.array([0.85, 0.12, 0.03])

SLA_TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
SLA_BY_SEGMENT = np.array(
    [
        [0.80, 0.20, 0.00, 0.00],  # consumer
        [0.20, 0.50, 0.30, 0.00],  # smb
        [0.00, 0.10, 0.50, 0.40],  # enterprise
    ]
)


@dataclass(frozen=True)
class Plan:
    name: str
    segment: str
    list_price: float
    price_spread: float  # sd of log(mrr / list_price)
    share: float  # within its segment


PLANS: tuple[Plan, ...] = (
    Plan("mobile-basic", "consumer", 25.0, 0.20, 0.35),
    Plan("mobile-plus", "consumer", 45.0, 0.20, 0.40),
    Plan("mobile-unlimited", "consumer", 70.0, 0.15, 0.25),
    Plan("business-standard", "smb", 150.0, 0.40, 0.65),
    Plan("business-premium", "smb", 400.0, 0.45, 0.35),
    Plan("enterprise-connect", "enterprise", 1_200.0, 0.60, 0.60),
    Plan("enterprise-dedicated", "enterprise", 4_000.0, 0.70, 0.40),
)

CONTRACTS: tuple[str, ...] = ("month_to_month", "one_year", "two_year")
CONTRACT_DAYS = np.array([0, 365, 730])
CONTRACT_BY_SEGMENT = np.array(
    [
        [0.45, 0.30, 0.25],
        [0.30, 0.40, 0.30],
        [0.00, 0.35, 0.65],
    ]
)

DEVICES: tuple[str, ...] = (
    "smartphone-5g",
    "smartphone-4g",
    "feature-phone",
    "fwa-router",
    "iot-modem",
)
DEVICE_BY_SEGMENT = np.array(
    [
        [0.45, 0.40, 0.05, 0.10, 0.00],
        [0.30, 0.20, 0.00, 0.35, 0.15],
        [0.25, 0.00, 0.00, 0.40, 0.35],
    ]
)
DEVICE_LATENCY_FACTOR = np.array([1.0, 1.15, 1.3, 0.9, 1.1])
DEVICE_FAILURE_RATE = np.array([0.15, 0.25, 0.4, 0.1, 0.3])  # failed sessions per healthy day
DEVICE_DATA_MB = np.array([450.0, 300.0, 20.0, 4_000.0, 60.0])  # median daily data


@dataclass(frozen=True)
class FaultKind:
    name: str
    share: float
    outage: bool
    duration_median_min: float
    lead_hours: tuple[float, float] | None  # window of leading signals before the fault
    extra_cells: tuple[int, int]  # further cells of the region taken down with it
    alarm: str | None  # probable cause raised by the element manager


FAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind("power_failure", 0.20, True, 60, None, (0, 0), "AC power supply failure"),
    FaultKind("backhaul_cut", 0.10, True, 150, None, (1, 5), "S1 link failure"),
    FaultKind("hardware_failure", 0.20, True, 120, (6, 24), (0, 0), "Baseband unit fault"),
    FaultKind("congestion", 0.25, False, 240, (2, 6), (0, 0), None),
    FaultKind("interference", 0.25, False, 180, None, (0, 0), "Uplink interference detected"),
)
RESTARTING_FAULTS = frozenset({"power_failure", "hardware_failure"})  # counters reset after these
NOISE_ALARMS: tuple[str, ...] = (
    "VSWR over threshold",
    "Board temperature high",
    "Clock synchronisation degraded",
    "Fan speed abnormal",
)

ACTIONS: tuple[str, ...] = ("credit", "message", "offer", "priority_repair")
