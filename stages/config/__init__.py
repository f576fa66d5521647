"""Default configuration shipped with the stages.

Read with :mod:`importlib.resources`, so it works from a Lambda zip as well as
from a checkout. A workflow overrides any top-level key through the stage's
``config``.

>>> load_default("score_models.json")["primaryModel"]
'review-propensity-v1'
"""

import json
from importlib.resources import files
from typing import Any

__all__ = ["load_default"]


def load_default(name: str) -> dict[str, Any]:
    """The parsed JSON file ``name`` of this package (for example ``score_models.json``)."""
    return json.loads(files(__name__).joinpath(name).read_text(encoding="utf-8"))
