"""Preset source mappings: YAML files shipped in ``presets/``, one per kind of export.

A preset file has a ``description`` and one mapping per source it can feed
(``telemetry``, ``tickets`` and/or ``incidents``). Users name a preset in
kpi.yaml, or copy a file and edit it into an explicit mapping.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
from typing import Any

import yaml

PRESET_SUFFIX = ".yaml"


def _folder() -> importlib.resources.abc.Traversable:
    return importlib.resources.files("kpi_pipeline.sources").joinpath("presets")


@functools.cache
def preset_names() -> tuple[str, ...]:
    """Names of the shipped presets, sorted."""
    return tuple(
        sorted(
            entry.name.removesuffix(PRESET_SUFFIX)
            for entry in _folder().iterdir()
            if entry.name.endswith(PRESET_SUFFIX)
        )
    )


@functools.cache
def _load(name: str) -> dict[str, Any]:
    text = _folder().joinpath(f"{name}{PRESET_SUFFIX}").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def preset_sources(name: str) -> tuple[str, ...]:
    """The sources (telemetry, tickets, incidents) a preset has a mapping for."""
    return tuple(key for key in _load(name) if key != "description")


def preset_mapping(name: str, source: str) -> dict[str, Any]:
    """A copy of preset ``name``'s mapping for ``source``; ValueError naming the presets when unknown."""
    if name not in preset_names():
        raise ValueError(f"preset {name!r} is unknown; presets: {', '.join(preset_names())}")
    mapping = _load(name).get(source)
    if mapping is None:
        raise ValueError(
            f"preset {name!r} has no {source} mapping (it maps: {', '.join(preset_sources(name))})"
        )
    return copy.deepcopy(mapping)
