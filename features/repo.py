"""The Feast repository: entities, sources, feature views and one feature service per model.

Training and serving name a feature service (``churn_v1``, ``fault_v1``), never a loose list of
features; a model's feature order, request schema and drift columns all derive from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, String

from closedloop.home import Home
from closedloop.models import SPECS
from features.build import BUILT_FROM
from features.online import LIVE_FEATURES, LIVE_VIEW

CUSTOMER_PROFILE: dict[str, object] = {
    "mrr": Float64,
    "price_ratio": Float64,
    "tenure_months": Float64,
    "contract_months_left": Float64,
    "month_to_month": Float64,
    "sla_rank": Float64,
    "segment": String,
    "sla_tier": String,
    "value_segment": String,
    "contract_type": String,
    "device_type": String,
    "region": String,
    "do_not_contact": Float64,
}
CUSTOMER_EXPERIENCE = dict.fromkeys(
    (
        "outage_minutes_1d",
        "outage_minutes_7d",
        "outage_minutes_30d",
        "degraded_minutes_7d",
        "degraded_minutes_30d",
        "latency_p95_ms_1d",
        "latency_p95_ms_7d",
        "failed_sessions_1d",
        "failed_sessions_7d",
        "failed_sessions_30d",
    ),
    Float64,
)
CUSTOMER_ENGAGEMENT = dict.fromkeys(
    (
        "data_mb_7d",
        "data_mb_30d",
        "usage_trend",
        "voice_minutes_30d",
        "tickets_30d",
        "network_tickets_30d",
        "complaints_30d",
        "days_since_ticket",
        "late_invoices_90d",
        "unpaid_amount",
        "credit_amount_30d",
        "credits_90d",
    ),
    Float64,
)
CELL_HEALTH: dict[str, object] = {
    **dict.fromkeys(
        (
            "availability_1h",
            "availability_24h",
            "down_minutes_24h",
            "latency_ms_1h",
            "latency_ms_24h",
            "latency_trend_6h",
            "packet_loss_1h",
            "packet_loss_6h",
            "loss_trend_6h",
            "prb_util_1h",
            "prb_util_6h",
            "prb_trend_6h",
            "throughput_1h",
            "users_1h",
            "alarms_1h",
            "alarms_24h",
            "missing_reports_24h",
            "capacity_mbps",
            "baseline_latency_ms",
        ),
        Float64,
    ),
    "technology": String,
    "vendor": String,
}
CELL_LIVE = dict.fromkeys(LIVE_FEATURES, Float64)
DESCRIPTIONS = {
    "mrr": "monthly recurring revenue",
    "price_ratio": "price paid against the plan's list price",
    "tenure_months": "months as a customer",
    "contract_months_left": "months left on the contract",
    "month_to_month": "on a month-to-month contract",
    "sla_rank": "SLA tier rank",
    "segment": "customer segment",
    "sla_tier": "SLA tier",
    "value_segment": "value segment",
    "contract_type": "contract type",
    "device_type": "device or access line",
    "region": "region",
    "do_not_contact": "asked not to be contacted",
    "outage_minutes_1d": "outage minutes in the last day",
    "outage_minutes_7d": "outage minutes in the last 7 days",
    "outage_minutes_30d": "outage minutes in the last 30 days",
    "degraded_minutes_7d": "degraded-service minutes in the last 7 days",
    "degraded_minutes_30d": "degraded-service minutes in the last 30 days",
    "latency_p95_ms_1d": "95th-percentile latency in the last day (ms)",
    "latency_p95_ms_7d": "95th-percentile latency over 7 days (ms)",
    "failed_sessions_1d": "failed sessions in the last day",
    "failed_sessions_7d": "failed sessions in the last 7 days",
    "failed_sessions_30d": "failed sessions in the last 30 days",
    "data_mb_7d": "data used in the last 7 days (MB)",
    "data_mb_30d": "data used in the last 30 days (MB)",
    "usage_trend": "usage of the last week against the last month",
    "voice_minutes_30d": "voice minutes in the last 30 days",
    "tickets_30d": "support tickets in the last 30 days",
    "network_tickets_30d": "network tickets in the last 30 days",
    "complaints_30d": "complaints in the last 30 days",
    "days_since_ticket": "days since the last ticket",
    "late_invoices_90d": "late invoices in the last 90 days",
    "unpaid_amount": "unpaid amount",
    "credit_amount_30d": "credits given in the last 30 days",
    "credits_90d": "credits in the last 90 days",
    "availability_1h": "availability in the last hour (%)",
    "availability_24h": "availability over 24 hours (%)",
    "down_minutes_24h": "minutes down in the last 24 hours",
    "latency_ms_1h": "latency in the last hour (ms)",
    "latency_ms_24h": "latency over 24 hours (ms)",
    "latency_trend_6h": "latency change over the last 6 hours (ms)",
    "packet_loss_1h": "packet loss in the last hour (%)",
    "packet_loss_6h": "packet loss over 6 hours (%)",
    "loss_trend_6h": "packet-loss change over the last 6 hours",
    "prb_util_1h": "radio resource use in the last hour (%)",
    "prb_util_6h": "radio resource use over 6 hours (%)",
    "prb_trend_6h": "radio resource use change over the last 6 hours",
    "throughput_1h": "throughput in the last hour (Mbps)",
    "users_1h": "connected users in the last hour",
    "alarms_1h": "alarms in the last hour",
    "alarms_24h": "alarms in the last 24 hours",
    "missing_reports_24h": "missing KPI reports in the last 24 hours",
    "capacity_mbps": "cell capacity (Mbps)",
    "baseline_latency_ms": "the cell's normal latency (ms)",
    "technology": "radio technology",
    "vendor": "equipment vendor",
    "availability_pct": "availability (%)",
    "latency_ms": "latency (ms)",
    "packet_loss_pct": "packet loss (%)",
    "prb_util_pct": "radio resource use (%)",
    "connected_users": "connected users",
    "alarm_count": "active alarms",
}  # plain words for every feature: Feast's field descriptions and the reasons serving gives
POLICY_ONLY = ("do_not_contact",)  # in the profile for the action layer, never a model input


class Kind(StrEnum):
    """How a feature moves over time: what monitoring may call drift in it."""

    LEVEL = "a measured level (price, latency, usage): compared as it is"
    SPARSE = "mostly one value, moved by rare events (outages, tickets, alarms, late bills)"
    CATEGORY = "a category or a small set of values (segment, region, a flag)"
    CLOCK = "moves with the calendar by design (tenure, months left on a contract)"


@dataclass(frozen=True)
class Traits:
    """What monitoring must know of a feature: its kind, the history a value summarises (a
    value is complete only once that much data lies behind it) and, for a clock, how far it
    moves per day (down to ``floor``)."""

    kind: Kind
    history: timedelta = timedelta(0)
    per_day: float = 0.0
    floor: float | None = None


def _traits(kind: Kind, names: str, history: timedelta = timedelta(0)) -> dict[str, Traits]:
    return {name: Traits(kind, history) for name in names.split()}


D, H = timedelta(days=1), timedelta(hours=1)
TRAITS: dict[str, Traits] = {
    **_traits(Kind.LEVEL, "mrr price_ratio"),
    "tenure_months": Traits(Kind.CLOCK, per_day=1 / 30.4),
    "contract_months_left": Traits(Kind.CLOCK, per_day=-1 / 30.4, floor=0.0),
    **_traits(Kind.CATEGORY, "month_to_month sla_rank do_not_contact technology vendor"),
    **_traits(Kind.CATEGORY, "segment sla_tier value_segment contract_type device_type region"),
    **_traits(Kind.SPARSE, "outage_minutes_1d failed_sessions_1d"),
    **_traits(Kind.LEVEL, "latency_p95_ms_1d"),
    **_traits(Kind.SPARSE, "outage_minutes_7d degraded_minutes_7d failed_sessions_7d", 7 * D),
    **_traits(Kind.LEVEL, "latency_p95_ms_7d data_mb_7d", 7 * D),
    **_traits(Kind.SPARSE, "outage_minutes_30d degraded_minutes_30d failed_sessions_30d", 30 * D),
    **_traits(Kind.SPARSE, "tickets_30d network_tickets_30d complaints_30d", 30 * D),
    **_traits(Kind.SPARSE, "credit_amount_30d", 30 * D),
    **_traits(Kind.LEVEL, "data_mb_30d usage_trend voice_minutes_30d", 30 * D),
    **_traits(Kind.SPARSE, "late_invoices_90d credits_90d", 90 * D),
    **_traits(Kind.LEVEL, "days_since_ticket", 365 * D),  # capped at 365 days
    **_traits(Kind.LEVEL, "unpaid_amount", 60 * D),  # a balance: settles after two bill cycles
    **_traits(Kind.SPARSE, "availability_1h alarms_1h"),
    **_traits(Kind.SPARSE, "availability_24h down_minutes_24h alarms_24h", 24 * H),
    **_traits(Kind.SPARSE, "missing_reports_24h", 24 * H),
    **_traits(Kind.LEVEL, "latency_ms_1h packet_loss_1h prb_util_1h throughput_1h users_1h"),
    **_traits(Kind.LEVEL, "latency_ms_24h", 24 * H),
    **_traits(Kind.LEVEL, "packet_loss_6h prb_util_6h", 6 * H),
    **_traits(Kind.LEVEL, "latency_trend_6h loss_trend_6h prb_trend_6h", 6 * H),
    **_traits(Kind.LEVEL, "capacity_mbps baseline_latency_ms"),
}  # the windows are those features/build.py computes; a value stamped t is complete once
# t - history is no earlier than the first stamp of the feature table


@dataclass(frozen=True)
class FeaturePaths:
    """Where the sources of the repository live (all under the home folder)."""

    customer_daily: Path
    cell_hourly: Path
    cell_telemetry: Path
    attributes: Path  # <table>/<source>.parquet: a data set's entity attributes

    @classmethod
    def under(cls, paths: Home) -> FeaturePaths:
        return cls(
            customer_daily=paths.customer_daily,
            cell_hourly=paths.cell_hourly,
            cell_telemetry=paths.offline_table("cell_telemetry"),
            attributes=paths.features / "attributes",
        )


ENTITY_TABLES = {"customers": "customer", "cells": "cell"}  # canonical table -> Feast entity


@dataclass(frozen=True)
class AttributeSet:
    """One data set's attributes of one entity, as built (features/attributes/<table>/<src>)."""

    source: str
    table: str
    path: Path
    fields: dict[str, object]  # name -> Feast type, in the file's order

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.source.lower()).strip("_")

    def service(self, base: str) -> str:
        """The data set's service beside the built-in ``base`` (churn_v1 -> churn_<slug>_v1)."""
        model, version = base.rsplit("_", 1)
        return f"{model}_{self.slug}_{version}"


def attribute_sets(paths: FeaturePaths) -> list[AttributeSet]:
    """Every built attribute table, its fields read from the Parquet schema."""
    found = []
    for table in ENTITY_TABLES:
        for path in sorted((paths.attributes / table).glob("*.parquet")):
            schema = pq.read_schema(path)
            fields = {
                f.name: String if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                else Float64
                for f in schema
                if f.name not in (schema.names[0], "event_timestamp")
            }  # fmt: skip
            found.append(AttributeSet(path.stem, table, path, fields))
    return found


def _fields(features: dict[str, object], describe=DESCRIPTIONS.__getitem__) -> list[Field]:
    return [
        Field(name=name, dtype=dtype, description=describe(name))
        for name, dtype in features.items()
    ]


@dataclass(frozen=True)
class FeatureRepo:
    customer: Entity
    cell: Entity
    customer_profile: FeatureView
    customer_experience: FeatureView
    customer_engagement: FeatureView
    cell_health: FeatureView
    cell_live: FeatureView
    cell_live_push: PushSource
    churn_v1: FeatureService
    fault_v1: FeatureService
    data_sets: tuple[object, ...] = field(default=())  # each data set's view and services

    @property
    def objects(self) -> list[object]:
        named = [getattr(self, name) for name in self.__dataclass_fields__ if name != "data_sets"]
        return [*named, *self.data_sets]

    @property
    def views(self) -> list[FeatureView]:
        return [o for o in self.objects if isinstance(o, FeatureView)]

    @property
    def services(self) -> dict[str, FeatureService]:
        return {o.name: o for o in self.objects if isinstance(o, FeatureService)}


def feature_repo(paths: FeaturePaths, attributes: list[AttributeSet] | None = None) -> FeatureRepo:
    customer = Entity(
        name="customer", join_keys=["customer_id"], value_type=ValueType.STRING,
        description="a customer account",
    )  # fmt: skip
    cell = Entity(
        name="cell", join_keys=["cell_id"], value_type=ValueType.STRING,
        description="a radio cell",
    )  # fmt: skip
    customer_daily = FileSource(
        name="customer_daily",
        path=str(paths.customer_daily),
        timestamp_field="event_timestamp",
        description="daily customer features, stamped at the end of the day they summarise",
    )
    cell_hourly = FileSource(
        name="cell_hourly",
        path=str(paths.cell_hourly),
        timestamp_field="event_timestamp",
        description="hourly cell health, stamped at the end of the hour it summarises",
    )
    telemetry = FileSource(
        name="cell_telemetry",
        path=str(paths.cell_telemetry / "*.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="ts",
        description="canonical 15-minute cell KPIs from every vendor",
    )
    cell_live_push = PushSource(name="cell_live_push", batch_source=telemetry)

    def customer_view(name: str, features: dict[str, object], description: str) -> FeatureView:
        return FeatureView(
            name=name,
            entities=[customer],
            ttl=timedelta(days=2),
            schema=_fields(features),
            source=customer_daily,
            online=True,
            description=description,
        )

    customer_profile = customer_view(
        "customer_profile", CUSTOMER_PROFILE, "revenue, SLA, contract and tenure"
    )
    customer_experience = customer_view(
        "customer_experience", CUSTOMER_EXPERIENCE, "network experience over 1, 7 and 30 days"
    )
    customer_engagement = customer_view(
        "customer_engagement", CUSTOMER_ENGAGEMENT, "usage, support and billing history"
    )
    cell_health = FeatureView(
        name="cell_health",
        entities=[cell],
        ttl=timedelta(hours=3),
        schema=_fields(CELL_HEALTH),
        source=cell_hourly,
        online=True,
        description="cell health over 1, 6 and 24 hours, and the trends that lead faults",
    )
    cell_live = FeatureView(
        name=LIVE_VIEW,
        entities=[cell],
        ttl=timedelta(hours=1),
        schema=_fields(CELL_LIVE),
        source=cell_live_push,
        online=True,
        description="the latest KPIs of each cell, pushed as telemetry arrives",
    )
    model_profile = [f for f in CUSTOMER_PROFILE if f not in POLICY_ONLY]
    inputs = {
        "churn_v1": [customer_profile[model_profile], customer_experience, customer_engagement],
        "fault_v1": [cell_health],
    }
    churn_v1 = FeatureService(
        name="churn_v1", features=inputs["churn_v1"], description="inputs of churn model version 1"
    )
    fault_v1 = FeatureService(
        name="fault_v1", features=inputs["fault_v1"], description="inputs of fault model version 1"
    )
    entities = {"customer": customer, "cell": cell}
    built_in = {"churn_v1": churn_v1, "fault_v1": fault_v1}
    data_sets: list[object] = []
    for found in attributes or []:
        entity = entities[ENTITY_TABLES[found.table]]
        view = FeatureView(
            name=f"{found.slug}_{entity.name}_attributes",
            entities=[entity],
            ttl=timedelta(days=3650),  # static facts of the entity, stamped once
            schema=_fields(found.fields, lambda name, s=found: f"{name} ({s.source} attribute)"),
            source=FileSource(
                name=f"{found.slug}_{entity.name}_attributes",
                path=str(found.path),
                timestamp_field="event_timestamp",
                description=f"{found.source}: attributes of each {entity.name} from its mapping",
            ),
            online=True,
            description=f"attributes of each {entity.name} the {found.source} mapping carries",
        )
        data_sets.append(view)
        for model in SPECS.values():
            if model.entity != entity.name:
                continue
            base = built_in[model.feature_service]
            data_sets.append(
                FeatureService(
                    name=found.service(base.name),
                    features=[*inputs[base.name], view],
                    description=f"{base.description} and the attributes of {found.source}",
                    tags={"data_set": found.source, "built_in": base.name},
                )
            )
    return FeatureRepo(
        customer=customer,
        cell=cell,
        customer_profile=customer_profile,
        customer_experience=customer_experience,
        customer_engagement=customer_engagement,
        cell_health=cell_health,
        cell_live=cell_live,
        cell_live_push=cell_live_push,
        churn_v1=churn_v1,
        fault_v1=fault_v1,
        data_sets=tuple(data_sets),
    )


def service_features(service: FeatureService) -> list[str]:
    """The service's features in their fixed order: the model's column order."""
    return [f.name for projection in service.feature_view_projections for f in projection.features]


def unused_columns(reports: list) -> list[tuple[str, str, str]]:
    """Mapped canonical columns no feature service reads: (source, 'table.column <- source
    column', why). Attributes are read by their data set's services; labels label."""
    found = []
    for report in reports:
        mapped = getattr(report, "mapped", {})
        carried = {r: w.rsplit(".", 1)[1] for w, r in mapped.items() if ".attributes." in w}
        for destination, read in mapped.items():
            table, _, column = destination.partition(".")
            if table not in BUILT_FROM or column.startswith("attributes."):
                continue
            if column in POLICY_ONLY:
                why = "read by the action layer's policy, never a model input"
            elif column not in BUILT_FROM[table]:
                why = f"no built-in feature is computed from {table}.{column}; " + (
                    f"{read} reaches models as attribute {carried[read]}"
                    if read in carried
                    else f"carry {read} as an attribute (features/mappings/README.md) to reach one"
                )
            else:
                continue
            found.append((report.source, f"{destination} <- {read}", why))
    return found
