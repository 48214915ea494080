"""``params.yaml``, parsed once at the entry point into one typed model.

One section per stage (``world``, ``train_churn``, ``train_fault``, ``monitor``), each the stage's
own config model holding its defaults; a file names only what it changes. The CLI loads the
file and passes each stage its typed section; nothing below the CLI imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from closedloop.models import SPECS
from closedloop.terminal import UserError, describe_validation
from closedloop.world.config import WorldConfig
from monitoring.config import MonitorConfig
from training.config import TrainConfig, churn_defaults, fault_defaults, merged, train_config


class Params(BaseModel):
    """Every stage's parameters; a section or key left out keeps the stage's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    world: WorldConfig = Field(default_factory=WorldConfig)
    train_churn: TrainConfig = Field(default_factory=churn_defaults)
    train_fault: TrainConfig = Field(default_factory=fault_defaults)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @model_validator(mode="before")
    @classmethod
    def _training_over_its_defaults(cls, raw: Any) -> Any:
        """A ``train_<target>`` section overrides the target's defaults key by key."""
        if not isinstance(raw, dict):
            return raw
        out = dict(raw)
        for target in SPECS:
            section = out.get(f"train_{target}")
            if isinstance(section, dict):
                out[f"train_{target}"] = merged(train_config(target).model_dump(), section)
        return out

    def train(self, target: str) -> TrainConfig:
        """How model ``target`` trains."""
        return getattr(self, f"train_{target}")


def load_params(path: Path | None) -> Params:
    """The parameters in ``path`` (the defaults when None); a bad file is a UserError that
    names the file and the key that is wrong."""
    if path is None:
        return Params()
    if not path.is_file():
        raise UserError(f"params file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise UserError(
            f"{path}: expected a mapping of sections ({', '.join(Params.model_fields)})"
        )
    sections = {k: v for k, v in (loaded or {}).items() if v is not None}
    try:
        return Params.model_validate(sections)
    except ValidationError as error:
        raise UserError(f"{path}: {describe_validation(error)}") from None
