"""The result every data-quality check returns, independent of Dagster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["ERROR", "WARN"]


@dataclass(frozen=True)
class CheckOutcome:
    """Whether a check passed; when it failed, how badly (ERROR blocks downstream work when the
    check is blocking, WARN never does), a message naming the check, the partition and the
    numbers, and JSON-able metadata shown next to the asset."""

    passed: bool
    severity: Severity
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)
