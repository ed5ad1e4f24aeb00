"""The rename rule of the porting guide, as code: a Prefect script becomes a braid script
by rewriting its imports (and three class names), nothing else.

1. ``prefect_dask`` -> ``braid.adapters.dask``, ``prefect_ray`` -> ``braid.adapters.ray``
   (their submodules keep their names);
2. every other ``prefect`` module path -> the same path under ``braid``;
3. ``PrefectFuture`` -> ``TaskFuture``, ``PrefectFutureList`` -> ``FutureList``,
   ``PrefectDaskFuture`` -> ``DaskFuture``, ``PrefectRayFuture`` -> ``RayTaskFuture``.
"""

from __future__ import annotations

import re

_MODULES = [
    (re.compile(r"\bprefect_dask\b"), "braid.adapters.dask"),
    (re.compile(r"\bprefect_ray\b"), "braid.adapters.ray"),
    (re.compile(r"\bprefect\b(?=[.\s]|$)"), "braid"),
]
_NAMES = [
    (re.compile(r"\bPrefectFutureList\b"), "FutureList"),
    (re.compile(r"\bPrefectDaskFuture\b"), "DaskFuture"),
    (re.compile(r"\bPrefectFuture\b"), "TaskFuture"),
    (re.compile(r"\bPrefectRayFuture\b"), "RayTaskFuture"),
]
_IMPORT = re.compile(r"^(\s*)(from\s+\S+\s+import\b|import\s+\S+)", re.MULTILINE)


def rename_imports(source: str) -> str:
    """``source`` with the rename rule applied to its import statements and class names."""

    def module_part(match: re.Match[str]) -> str:
        text = match.group(2)
        for pattern, new in _MODULES:
            text = pattern.sub(new, text)
        return match.group(1) + text

    source = _IMPORT.sub(module_part, source)
    for pattern, new in _NAMES:
        source = pattern.sub(new, source)
    return source
