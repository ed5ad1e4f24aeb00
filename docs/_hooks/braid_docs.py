"""MkDocs hook: the parts of the docs that are read from the code at build time.

Markers in a page's Markdown (HTML comments, so the source reads fine on its own):

- ``<!-- braid:capabilities EXPR; EXPR -->``: a table of every ``Capabilities`` field
  (described by the ``Capabilities`` docstring) against the runners named, each EXPR a
  runner class (``DaskTaskRunner``) or a construction
  (``ThreadPoolTaskRunner(check_pickling=True)``).
- ``<!-- braid:api MODULE -->``: one mkdocstrings ``::: MODULE.NAME`` entry per name in
  ``MODULE.__all__`` (submodules left out), so the reference follows ``__all__``.
- ``<!-- braid:error NAME -->``: the heading of one exception of ``braid.errors``, its
  bases and its docstring; the hand-written notes follow the marker.  Classes of
  ``braid.errors.__all__`` without a marker get a section from their docstring alone,
  where ``<!-- braid:other-errors -->`` stands (else at the end of the page); a marker
  naming no class fails the build.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import types

log = logging.getLogger("mkdocs.plugins.braid_docs")

MARKER = re.compile(r"<!--\s*braid:(capabilities|api|error)\s+(.*?)\s*-->")
OTHER_ERRORS = "<!-- braid:other-errors -->"


def runner_namespace() -> dict:
    import braid

    names = ("ThreadPoolTaskRunner", "ProcessPoolTaskRunner", "DaskTaskRunner", "RayTaskRunner")
    return {name: getattr(braid, name) for name in names}


def capabilities_class() -> type:
    import braid

    return type(braid.ThreadPoolTaskRunner.capabilities)


def capability_descriptions() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (capabilities_class().__doc__ or "").splitlines():
        m = re.match(r"\s*-\s*``(\w+)``:\s*(.*)", line)
        if m:
            found[m.group(1)] = m.group(2)
        elif found and line.strip() and not line.strip().startswith("-"):
            last = list(found)[-1]
            found[last] += " " + line.strip()
    return found


def capabilities_table(spec: str) -> str:
    namespace = runner_namespace()
    columns = []
    for expr in (e.strip() for e in spec.split(";") if e.strip()):
        runner = eval(expr, {"__builtins__": {}}, namespace)  # noqa: S307 - our own pages
        columns.append((expr, runner.capabilities))
    described = capability_descriptions()
    fields = list(capabilities_class().__slots__)
    header = "| capability | " + " | ".join(f"`{e}`" for e, _ in columns) + " | meaning |"
    rule = "|---|" + "---|" * len(columns) + "---|"
    rows = []
    for field in fields:
        cells = " | ".join("yes" if getattr(c, field) else "no" for _, c in columns)
        rows.append(f"| `{field}` | {cells} | {described.get(field, '')} |")
    cls = capabilities_class()
    note = (
        f"\n*Read from each runner's `capabilities` when this site was built "
        f"(`{cls.__module__}.{cls.__name__}`).*\n"
    )
    return "\n".join([header, rule, *rows]) + "\n" + note


def api_entries(module_name: str) -> str:
    module = importlib.import_module(module_name)
    entries = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name, None)
        if isinstance(obj, types.ModuleType):
            continue
        if name in vars(module):
            entries.append(f"::: {module_name}.{name}\n")
        else:  # provided lazily by the module's __getattr__: document where it lives
            entries.append(f"::: {obj.__module__}.{obj.__qualname__}\n")
    return "\n".join(entries)


def error_section(name: str) -> str:
    from braid import errors

    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        log.warning("troubleshooting: braid.errors has no exception class %r", name)
        return f"## {name}\n"
    bases = ", ".join(f"`{b.__name__}`" for b in cls.__bases__)
    doc = inspect.cleandoc(cls.__doc__ or "").replace("\n\n", "\n\n> ")
    return f"## {name}\n\n*Derives from {bases}.*\n\n> {doc}\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    seen_errors: list[str] = []

    def expand(m: re.Match) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "capabilities":
            return capabilities_table(arg)
        if kind == "api":
            return api_entries(arg)
        seen_errors.append(arg)
        return error_section(arg)

    markdown = MARKER.sub(expand, markdown)
    if seen_errors:
        from braid import errors

        missing = [n for n in errors.__all__ if n not in seen_errors]
        rest = "\n".join(error_section(n) for n in missing)
        if OTHER_ERRORS in markdown:
            markdown = markdown.replace(OTHER_ERRORS, rest)
        elif rest:
            markdown += "\n" + rest
    return markdown
