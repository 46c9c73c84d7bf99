"""Agent factories for the ready roles. Each returns an ``Agent`` with role instructions (``lang="en"`` or
``"zh"``), a typed output and the role's tools.

```python
from tq_agents.roles import planner, coder, reviewer
plan_agent = planner(model)                       # → Plan
code_agent = coder(model, sandbox=my_sandbox)     # → CodeResult, runs code with run_python
review_agent = reviewer(model, lang="zh")         # → Review
```

Every role agent is a ``RoleAgent``: when a tool-using turn is about to run out of tool rounds, or its
answer could not be parsed, the next request sets ``tool_choice="none"``. Constrained backends then decode
the typed answer under its JSON grammar, so even a weak (or random-weight) model ends its turn with a valid
output instead of failing the turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tq_agents._tool import Tool
from tq_agents.agent import Agent, TurnResult
from tq_agents.errors import ConfigError
from tq_agents.messages import CodeResult, Message, Plan, Review, SupportReply, Translation
from tq_agents.models.base import ChatModel
from tq_agents.roles._instructions import instructions

__all__ = ["RoleAgent", "coder", "guard", "planner", "reviewer", "support", "translator"]


class RoleAgent(Agent):
    """An ``Agent`` that forces its final typed answer (``tool_choice="none"``) once tools are spent or its
    answer was refused: the turn ends with an output rather than a failure.

    Args:
        result_type: A subclass of ``output_type`` whose extra fields (all with defaults) are filled by
            ``enrich``; the model still sees and emits ``output_type``'s schema.
        enrich: ``(inputs, output) -> output``: a deterministic post-step that copies facts from the turn's
            inputs into the output (e.g. the text a review is about), so they travel with the message.
        *args, **kwargs: As for ``Agent``; ``final_answer_without_tools`` defaults to ``True`` here.
    """

    def __init__(
        self,
        *args: Any,
        result_type: type[Message] | None = None,
        enrich: Callable[[Sequence[Message], Message], Message] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("final_answer_without_tools", True)
        super().__init__(*args, **kwargs)
        if result_type is not None:
            if not issubclass(result_type, self.output_type):
                raise ConfigError(
                    f"agent {self.name!r}: result_type {result_type.__name__} must subclass {self.output_type.__name__}"
                )
            self.output_type = result_type  # schema and prompt stay those of the model-facing type
        self._enrich = enrich

    async def run_turn(self, inputs: Sequence[Message], **kwargs: Any) -> TurnResult:
        res = await super().run_turn(inputs, **kwargs)
        if res.output is not None and self._enrich is not None:
            res.output = self._enrich(inputs, res.output)
        return res


def _agent(
    name: str,
    role: str,
    lang: str,
    model: ChatModel | None,
    output_type: Any,
    tools: Sequence[Tool] = (),
    extra: str = "",
    **kwargs: Any,
) -> RoleAgent:
    text = instructions(role, lang)
    if extra:
        text = f"{text}\n\n{extra.strip()}"
    return RoleAgent(name, text, model=model, tools=tools, output_type=output_type, **kwargs)


def planner(model: ChatModel | None = None, *, lang: str = "en", name: str = "planner", **kwargs: Any) -> RoleAgent:
    """The planner: request → ``Plan`` (goal, ordered steps with acceptance criteria and a role each).

    Args:
        model: Chat model; ``None`` uses the workflow's model.
        lang: Instruction language, ``en`` or ``zh``.
        name: Node name.
        **kwargs: Passed to ``Agent`` (``max_tokens``, ``temperature``, ...).
    """
    kwargs.setdefault("max_tokens", 512)
    return _agent(name, "planner", lang, model, Plan, **kwargs)


def coder(
    model: ChatModel | None = None,
    *,
    sandbox: Any = None,
    tools: Sequence[Tool] | None = None,
    lang: str = "en",
    name: str = "coder",
    max_fix_rounds: int = 3,
    **kwargs: Any,
) -> RoleAgent:
    """The coder: task → ``CodeResult``. Writes code, runs it with the sandboxed ``run_python`` tool and fixes
    failures, at most ``max_fix_rounds`` runs per turn.

    Args:
        model: Chat model; ``None`` uses the workflow's model.
        sandbox: The sandbox ``run_python`` uses (default: ``default_sandbox()`` on first use).
        tools: Replace the default tools (``run_python``).
        lang: Instruction language, ``en`` or ``zh``.
        name: Node name.
        max_fix_rounds: Tool rounds (code runs) per turn before the answer is forced.
        **kwargs: Passed to ``Agent``.
    """
    if tools is None:
        tools = [_run_python_tool(sandbox)]
    kwargs.setdefault("max_tokens", 768)
    return _agent(name, "coder", lang, model, CodeResult, tools, max_tool_iterations=max_fix_rounds, **kwargs)


def _run_python_tool(sandbox: Any) -> Tool:
    from tq_agents.tools import code as code_tools

    factory = getattr(code_tools, "make_code_tools", None) or getattr(code_tools, "code_tools", None)
    if sandbox is not None and factory is not None:
        for t in factory(sandbox):
            if t.name == "run_python":
                return t
    return code_tools.run_python  # type: ignore[no-any-return]


def translator(
    model: ChatModel | None = None,
    *,
    glossary: Mapping[str, str] | None = None,
    lang: str = "en",
    name: str = "translator",
    **kwargs: Any,
) -> RoleAgent:
    """The translator: text → ``Translation``; keeps Markdown, code and placeholders; uses a glossary tool.

    Args:
        model: Chat model; ``None`` uses the workflow's model.
        glossary: English term → Chinese term (default: a small e-commerce/software glossary).
        lang: Instruction language, ``en`` or ``zh``.
        name: Node name.
        **kwargs: Passed to ``Agent``.
    """
    from tq_agents.tools.text import text_tools

    kwargs.setdefault("max_tokens", 768)
    kwargs.setdefault("max_tool_iterations", 2)
    return _agent(name, "translator", lang, model, Translation, text_tools(glossary), **kwargs)


def reviewer(
    model: ChatModel | None = None,
    *,
    lang: str = "en",
    name: str = "reviewer",
    focus: str = "",
    **kwargs: Any,
) -> RoleAgent:
    """The reviewer: work → ``Review`` (``approve`` or ``revise`` with issues, severities, suggested fixes).

    Args:
        model: Chat model; ``None`` uses the workflow's model.
        lang: Instruction language, ``en`` or ``zh``.
        name: Node name.
        focus: Extra review instructions (what to check in this workflow).
        **kwargs: Passed to ``Agent``.
    """
    kwargs.setdefault("max_tokens", 384)
    return _agent(name, "reviewer", lang, model, Review, extra=focus, **kwargs)


def support(
    model: ChatModel | None = None,
    *,
    shop: Any = None,
    tools: Sequence[Tool] | None = None,
    lang: str = "en",
    name: str = "support",
    **kwargs: Any,
) -> RoleAgent:
    """The support agent: customer message → ``SupportReply`` (answer, actions taken, escalate flag).

    Args:
        model: Chat model; ``None`` uses the workflow's model.
        shop: ``tq_agents.tools.commerce.Shop`` its tools query (default: the shop at ``default_shop_path()``).
        tools: Replace the default commerce tools.
        lang: Instruction language, ``en`` or ``zh``.
        name: Node name.
        **kwargs: Passed to ``Agent``.
    """
    if tools is None:
        from tq_agents.tools.commerce import commerce_tools

        tools = commerce_tools(shop)
    kwargs.setdefault("max_tokens", 384)
    kwargs.setdefault("max_tool_iterations", 3)
    return _agent(name, "support", lang, model, SupportReply, tools, **kwargs)


def guard(model: ChatModel | None = None, *, lang: str = "en", name: str = "guard", **kwargs: Any) -> RoleAgent:
    """A reviewer for support replies (policy, no PII, customer's language) → ``Review``.

    Args:
        model: Chat model; ``None`` uses the workflow's model.
        lang: Instruction language, ``en`` or ``zh``.
        name: Node name.
        **kwargs: Passed to ``Agent``.
    """
    kwargs.setdefault("max_tokens", 256)
    return _agent(name, "guard", lang, model, Review, **kwargs)
