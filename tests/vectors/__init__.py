"""Test vectors as data files (JSON beside this module), loaded for ``pytest.mark.parametrize``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def load(name: str) -> Any:
    """The parsed JSON document ``tests/vectors/<name>``."""
    return json.loads((HERE / name).read_text(encoding="utf-8"))
