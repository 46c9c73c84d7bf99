"""``plan-code-review``: planner → coder ⇄ reviewer (bounded revise loop) → final report.

```
planner ──▶ coder ──▶ execute ──ok──▶ reviewer ──approve──▶ report
             ▲ (≤3 visits)│ fails              │
             └────────────┴────────◀───────────┘ revise
```

* ``planner`` writes a ``Plan``; ``coder`` writes code and runs it with the sandboxed ``run_python`` tool.
* ``execute`` runs the coder's final files once more in the sandbox and records the real exit code and
  output: the reviewer judges what the code does, not what the model says it does. A failing run goes
  straight back to the coder with its stderr.
* ``reviewer`` approves or asks for a revision; after three coder turns the report says it was not approved.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field
from tq_agents.workflows._registry import workflow

from tq_agents.graph import Workflow
from tq_agents.messages import CodeResult, FinalReport, Message, Plan, Review
from tq_agents.roles import coder as coder_role
from tq_agents.roles import planner as planner_role
from tq_agents.roles import reviewer as reviewer_role

if TYPE_CHECKING:
    from tq_agents.sandbox import ExecResult, Sandbox

    from tq_agents.models.base import ChatModel

__all__ = ["CodeReport", "CodeReview", "CoderOutput", "ExecutedCode", "build_plan_code_review", "pick_entry"]

MAX_ROUNDS = 3
_TAIL = 2000


class CoderOutput(CodeResult):
    """The coder's ``CodeResult`` with the task it works on attached by the workflow."""

    task: str = ""


class ExecutedCode(CodeResult):
    """The coder's files after the workflow ran them in the sandbox: exit code and output are real."""

    task: str = ""
    ok: bool = False
    problems: list[str] = Field(default_factory=list)

    def to_prompt(self) -> str:
        files = "\n\n".join(f"# file: {name}\n{body}" for name, body in self.files.items()) or "(no files)"
        run = f"exit code {self.exit_code}" + (" (timed out)" if self.timed_out else "")
        out = f"stdout:\n{self.stdout[-_TAIL:]}\nstderr:\n{self.stderr[-_TAIL:]}"
        if not self.ok:
            return (
                "The workflow ran your final code in the sandbox and it failed:\n- "
                + "\n- ".join(self.problems)
                + f"\n{out}\nFix the code, run it with run_python, and answer again."
            )
        return f"Task:\n{self.task}\n\nCode:\n{files}\n\nThe workflow ran `{self.command}`: {run}\n{out}"


class CodeReview(Review):
    """A reviewer's verdict with the executed code it judged attached by the workflow."""

    code: dict[str, Any] = Field(default_factory=dict, description="The ExecutedCode payload.")

    def to_prompt(self) -> str:
        return self.revision_request()


class CodeReport(FinalReport):
    """The final report: verdict, the code and its real run."""

    files: dict[str, str] = Field(default_factory=dict)
    command: str = ""
    exit_code: int | None = None
    stdout: str = ""


def _plan_text(plan: Plan) -> str:
    steps = "\n".join(
        f"{i}. {s.description}" + (f" (done when: {'; '.join(s.acceptance_criteria)})" if s.acceptance_criteria else "")
        for i, s in enumerate(plan.steps, 1)
    )
    return f"Goal: {plan.goal}\n{steps}".strip()


def _attach_task(inputs: Sequence[Message], out: Message) -> Message:
    task = ""
    for m in reversed(inputs):
        if isinstance(m, Plan):
            task = _plan_text(m)
        elif isinstance(m, ExecutedCode):
            task = m.task
        elif isinstance(m, CodeReview):
            task = str(m.code.get("task", ""))
        else:
            task = getattr(m, "text", "") or task
        if task:
            break
    return out.model_copy(update={"task": task}) if isinstance(out, CoderOutput) else out


def _attach_code(inputs: Sequence[Message], out: Message) -> Message:
    for m in reversed(inputs):
        if isinstance(m, ExecutedCode):
            return out.model_copy(update={"code": m.payload()})
    return out


def pick_entry(files: dict[str, str], command: str) -> str | None:
    """Which file to run: the ``.py`` named in ``command``, else ``main.py``, else the only/first ``.py``."""
    for token in re.findall(r"[\w./-]+\.py", command or ""):
        name = token.lstrip("./")
        if name in files:
            return name
    if "main.py" in files:
        return "main.py"
    py = sorted(f for f in files if f.endswith(".py"))
    return py[0] if py else None


class _LazySandbox:
    """``default_sandbox()`` created on first use and shared by the coder's tool and the execute step."""

    def __init__(self, sandbox: Sandbox | None) -> None:
        self._sb = sandbox
        self._lock = threading.Lock()

    def get(self) -> Sandbox:
        with self._lock:
            if self._sb is None:
                from tq_agents.sandbox import default_sandbox

                self._sb = default_sandbox()
            return self._sb

    async def arun(self, code: str, **kwargs: Any) -> ExecResult:
        return await self.get().arun(code, **kwargs)

    def run(self, code: str, **kwargs: Any) -> ExecResult:
        return self.get().run(code, **kwargs)


def build_plan_code_review(
    model: ChatModel | None = None, *, sandbox: Sandbox | None = None, timeout_s: float = 20.0
) -> Workflow:
    """Build the ``plan-code-review`` workflow; code runs in ``sandbox`` (default: ``default_sandbox()``)."""
    sb = _LazySandbox(sandbox)

    async def execute(result: CoderOutput) -> ExecutedCode:
        base = result.payload()
        entry = pick_entry(result.files, result.command)
        if entry is None:
            problem = "no Python file to run: put the program in `files` (e.g. main.py)"
            return ExecutedCode(**{**base, "exit_code": None, "stdout": "", "stderr": "", "problems": [problem]})
        others = {k: v for k, v in result.files.items() if k != entry}
        res = await sb.arun(result.files[entry], language="python", files=others or None, timeout=timeout_s)
        problems = []
        if res.timed_out:
            problems.append(f"it was killed at the {timeout_s:g} s time limit")
        elif res.exit_code != 0:
            problems.append(f"it exited with code {res.exit_code}")
        return ExecutedCode(
            **{
                **base,
                "command": f"python {entry}",
                "exit_code": res.exit_code,
                "stdout": res.stdout[-4 * _TAIL :],
                "stderr": res.stderr[-4 * _TAIL :],
                "timed_out": res.timed_out,
                "ok": not problems,
                "problems": problems,
            }
        )

    def report(v: CodeReview | ExecutedCode) -> CodeReport:
        code = v.code if isinstance(v, CodeReview) else v.payload()
        if isinstance(v, CodeReview):
            approved = v.verdict == "approve"
            issues = [f"[{i.severity}] {i.description}" for i in v.issues]
        else:
            approved, issues = False, list(v.problems)
        rounds = "approved by the reviewer" if approved else f"not approved after {MAX_ROUNDS} coding rounds"
        summary = f"{code.get('summary') or 'code written'!s}: {rounds}."
        return CodeReport(
            summary=summary,
            approved=approved,
            details="\n".join(issues),
            files=dict(code.get("files") or {}),
            command=str(code.get("command", "")),
            exit_code=code.get("exit_code"),
            stdout=str(code.get("stdout", ""))[-_TAIL:],
        )

    from tq_agents.tools.code import code_tools

    run_python = code_tools(sb)[0]  # type: ignore[arg-type]
    coder = coder_role(None, tools=[run_python], result_type=CoderOutput, enrich=_attach_task)
    focus = (
        "You review code against its task. The workflow already ran it: judge the real exit code and output. "
        "Approve when it does what the task asks."
    )
    reviewer = reviewer_role(None, focus=focus, result_type=CodeReview, enrich=_attach_code)
    wf = Workflow("plan-code-review", model=model, description="Plan, write and run code in a sandbox, review it.")
    wf.add_node(planner_role(None))
    wf.add_node(coder, max_visits=MAX_ROUNDS, on_exhausted="report")
    wf.add_node("execute", execute)
    wf.add_node(reviewer)
    wf.add_node("report", report, join="any")
    wf.add_edge("planner", "coder")
    wf.add_edge("coder", "execute")
    wf.add_edge("execute", "reviewer", condition=lambda r: r.ok, label="ran ok")
    wf.add_edge("execute", "coder", condition=lambda r: not r.ok, label="failed")
    wf.add_edge("reviewer", "coder", condition=lambda r: r.verdict == "revise", label="revise")
    wf.add_edge("reviewer", "report", condition=lambda r: r.verdict == "approve", label="approve")
    return wf.set_entry("planner")


@workflow("plan-code-review", description="Plan, write and run Python in the sandbox, review in a bounded loop.")
def _plan_code_review(model: ChatModel) -> Workflow:
    return build_plan_code_review(model)
