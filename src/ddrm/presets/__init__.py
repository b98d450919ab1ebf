"""Named settings shipped as YAML files (``quick``: the experiments' smoke-test scale; ``demo``: ``ddrm demo``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from ..config.loader import load_yaml


def preset(name: str) -> dict[str, Any]:
    """The preset ``ddrm/presets/<name>.yaml`` as a dict (a fresh copy on every call)."""
    return load_yaml(Path(str(resources.files("ddrm") / "presets" / f"{name}.yaml")))
