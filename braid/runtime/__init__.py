"""What the running code can know about its run, as module attributes (Prefect's
``prefect.runtime``): ``braid.runtime.flow_run``, ``task_run`` and ``deployment``.

Values are read when accessed (``from braid.runtime import flow_run; flow_run.name``)
and are empty outside a run (``None``, ``{}``, ``[]``).  Any attribute can be mocked
with an environment variable ``BRAID__RUNTIME__<SUBMODULE>__<NAME>`` (e.g.
``BRAID__RUNTIME__FLOW_RUN__NAME=test``), cast to the type of the real value.
"""

from __future__ import annotations

from braid.runtime import deployment, flow_run, task_run

__all__ = ["deployment", "flow_run", "task_run"]
