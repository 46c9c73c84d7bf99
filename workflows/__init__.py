"""Named, built-in workflows and the registry ``tq`` uses to find workflows by name.

Built-ins: ``plan-code-review`` (``tq_agents.workflows.plan_code_review``), ``translate-review``
(``tq_agents.workflows.translate_review``), ``support`` (``tq_agents.workflows.support``). Register your own
with ``@workflow("name")`` in a file under ``./workflows/`` or passed with ``tq run --file PATH``.
"""

from tq_agents.workflows._registry import WorkflowEntry, available, get, load_file, workflow

__all__ = ["WorkflowEntry", "available", "get", "load_file", "workflow"]
