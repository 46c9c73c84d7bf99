"""``Workflow``: a graph of agents and functions on ``networkx.DiGraph``, validated before it runs.

```python
wf = (
    Workflow("plan-code-review", model=model)
    .add_node(planner)                                   # an Agent: its name is the node name
    .add_node(coder, max_visits=3, on_exhausted="report")
    .add_node(reviewer)
    .add_node("report", make_report)                     # an (async) function: Message -> Message | None
    .add_edge("planner", "coder")
    .add_edge("coder", "reviewer")
    .add_edge("reviewer", "coder", condition=lambda r: r.verdict == "revise")
    .add_edge("reviewer", "report", condition=lambda r: r.verdict == "approve")
    .set_entry("planner")
)
result = wf.run_sync("Write a function that adds two numbers")
```

Builders return ``self``. ``validate()`` raises ``WorkflowValidationError`` whose ``problems`` name each bad
node or edge. ``run`` / ``run_sync`` / ``start`` validate first (see ``tq_agents.scheduler``).

Joins: a node with several predecessors fires on ``all`` (default: one message from each predecessor that can
still send one) or ``any`` (the first arrival; later arrivals of the same round are dropped, not re-fired: a
message from another predecessor whose turn was already running when the join fired).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import networkx as nx

from tq_agents.agent import Agent
from tq_agents.errors import UserError, WorkflowValidationError
from tq_agents.messages import Message, TextMessage
from tq_agents.models.base import check_chat_model

if TYPE_CHECKING:
    from tq_agents.models.base import ChatModel
    from tq_agents.scheduler import Run, RunResult
    from tq_agents.store import RunStore

__all__ = ["EdgeSpec", "Join", "NodeSpec", "Workflow"]

Join = Literal["all", "any"]
Condition = Callable[[Any], bool]


def _message_types(annotation: Any) -> tuple[tuple[type[Message], ...], bool]:
    """(message types, is_list) from an annotation; unknown → (Message,)."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is None:
        return (Message,), False
    origin = get_origin(annotation)
    if origin in (list, Sequence, typing.Sequence) or (
        origin is not None and inspect.isclass(origin) and issubclass(origin, (list, tuple))
    ):
        inner, _ = _message_types(get_args(annotation)[0] if get_args(annotation) else Any)
        return inner, True
    if origin in (Union, types.UnionType):
        out: list[type[Message]] = []
        is_list = False
        for a in get_args(annotation):
            if a is type(None):
                continue
            t, lst = _message_types(a)
            out.extend(t)
            is_list = is_list or lst
        return tuple(out) or (Message,), is_list
    if annotation is str:
        return (TextMessage,), False
    if inspect.isclass(annotation) and issubclass(annotation, Message):
        return (annotation,), False
    return (Message,), False


def _compatible(a: type[Message], b: type[Message]) -> bool:
    return issubclass(a, b) or issubclass(b, a)


def _is_async_callable(fn: Any) -> bool:
    """True for an ``async def`` function or async generator, also behind ``functools.partial`` or as the
    ``__call__`` of an object: calling it gives an awaitable (always truthy), not a ``bool``."""
    for f in (fn, getattr(fn, "__call__", None)):  # noqa: B004 - the __call__ of a callable object
        if f is not None and (inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f)):
            return True
    return False


def _takes_one_argument(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` can be called with one positional argument (True when its signature is unknown)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return True
    try:
        sig.bind(object())
    except TypeError:
        return False
    return True


_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "|": "#124;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;"}


def _mermaid_text(text: str) -> str:
    """``text`` with every character that could end a Mermaid string or label written as an entity code."""
    out = []
    for c in text:
        if c in _MERMAID_ESCAPES:
            out.append(_MERMAID_ESCAPES[c])
        elif ord(c) < 32 or ord(c) == 127:  # newlines and other control characters would end the statement
            out.append(f"#{ord(c)};")
        else:
            out.append(c)
    return "".join(out)


def _mermaid_label(label: str) -> str:
    """An edge label between pipes: plain words as they are, anything else quoted and escaped."""
    if label and label.isascii() and all(c.isalnum() or c in "_ " for c in label) and label.strip() == label:
        return label
    return f'"{_mermaid_text(label)}"'


def _type_label(t: Any) -> str:
    """The name of a ``message_type`` filter entry, also for one that is not a ``Message`` class."""
    if inspect.isclass(t) and issubclass(t, Message):
        return t.type_name
    return getattr(t, "__name__", None) or repr(t)


@dataclass(slots=True)
class NodeSpec:
    """One node: an ``Agent`` or a function, with its join rule and visit bound."""

    name: str
    agent: Agent | None = None
    fn: Callable[..., Any] | None = None
    join: Join = "all"
    max_visits: int | None = None
    on_exhausted: str | None = None
    input_types: tuple[type[Message], ...] = (Message,)
    output_types: tuple[type[Message], ...] = (Message,)
    takes_list: bool = False
    is_async: bool = False

    @property
    def kind(self) -> str:
        """``"agent"`` or ``"function"``."""
        return "agent" if self.agent is not None else "function"


@dataclass(slots=True)
class EdgeSpec:
    """An edge: optional ``condition`` on the message and optional ``message_type`` filter."""

    source: str
    target: str
    condition: Condition | None = None
    message_type: type[Message] | tuple[type[Message], ...] | None = None
    label: str | None = None

    def describe(self) -> str:
        """``edge source → target``, the prefix of every problem about this edge."""
        return f"edge {self.source} → {self.target}"


@dataclass
class _Problems:
    items: list[str] = field(default_factory=list)


class Workflow:
    """A mutable builder of a workflow graph. See the module docstring for an example.

    Args:
        name: Workflow name (recorded with each run).
        model: Default ``ChatModel`` for agents that have none.
        description: One line shown by ``tq list``.
    """

    def __init__(self, name: str = "workflow", *, model: ChatModel | None = None, description: str = "") -> None:
        check_chat_model(model, f"Workflow({name!r})")
        self.name = name
        self.model = model
        self.description = description
        self.graph: nx.DiGraph = nx.DiGraph()
        self.entries: list[str] = []
        self._build_problems: list[str] = []
        self._validated_version: int | None = None
        self._version = 0
        self._entry_cache: tuple[int, list[str]] | None = None
        self._topology_cache: tuple[int, Any] | None = None  # (version, scheduler topology), see _turn._topology

    # ---- building -------------------------------------------------------------------------------
    def add_node(
        self,
        node: Agent | str,
        fn: Callable[..., Any] | None = None,
        *,
        join: Join = "all",
        max_visits: int | None = None,
        on_exhausted: str | None = None,
    ) -> Workflow:
        """Add an ``Agent`` (named by its ``name``), or a function under a name: ``add_node("report", fn)``.

        A function takes one message (or ``list[...]`` of messages for joins) and returns a ``Message``,
        a list of them, a ``str`` (→ ``TextMessage``) or ``None`` (no output). Annotations set its types.

        Args:
            join: ``"all"`` or ``"any"`` (see module docstring).
            max_visits: At most this many turns of the node in one run (required on cycles).
            on_exhausted: When the bound is hit, send the inputs to this node instead of dropping them.
        """
        self._version += 1
        if isinstance(node, Agent):
            if fn is not None:
                self._build_problems.append(f"node {node.name!r}: pass either an Agent or a name and a function")
            spec = NodeSpec(name=node.name, agent=node, output_types=(node.output_type,))
        elif isinstance(node, str) and fn is not None and callable(fn):
            spec = self._function_spec(node, fn)
        else:
            self._build_problems.append(
                f"node {node!r}: expected an Agent, or a name and a function (add_node('name', fn))"
            )
            return self
        spec.join, spec.max_visits, spec.on_exhausted = join, max_visits, on_exhausted
        if join not in ("all", "any"):
            self._build_problems.append(f"node {spec.name!r}: join must be 'all' or 'any', got {join!r}")
        if max_visits is not None and (not isinstance(max_visits, int) or isinstance(max_visits, bool)):
            self._build_problems.append(f"node {spec.name!r}: max_visits must be an int >= 1, got {max_visits!r}")
        elif max_visits is not None and max_visits < 1:
            self._build_problems.append(f"node {spec.name!r}: max_visits must be >= 1, got {max_visits}")
        if spec.name in self.graph:
            self._build_problems.append(f"node {spec.name!r}: duplicate name (each node needs a unique name)")
            return self
        self.graph.add_node(spec.name, spec=spec)
        return self

    def _function_spec(self, name: str, fn: Callable[..., Any]) -> NodeSpec:
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(params) != 1:
            self._build_problems.append(f"node {name!r}: a function node takes exactly one parameter (its input)")
            in_types, takes_list = (Message,), False
        else:
            in_types, takes_list = _message_types(hints.get(params[0].name, params[0].annotation))
        out_types, _ = _message_types(hints.get("return", sig.return_annotation))
        return NodeSpec(
            name=name,
            fn=fn,
            input_types=in_types,
            output_types=out_types,
            takes_list=takes_list,
            is_async=inspect.iscoroutinefunction(fn),
        )

    def _resolve(self, node: Any) -> tuple[Any, str | None]:
        """(name, problem) of a node given as its name, its ``Agent`` or its function (as passed to ``add_node``).

        The name is ``node`` itself when it cannot be resolved; the problem is ``None`` when it is fine so far
        (an unknown name is reported by the caller)."""
        if isinstance(node, str):
            return node, None
        name = getattr(node, "name", None)
        if isinstance(name, str):  # an Agent (or another node object with a name)
            spec = self.graph.nodes[name]["spec"] if name in self.graph else None
            if isinstance(node, Agent) and spec is not None and spec.agent is not node:
                return name, f"{node!r} is not the Agent added under that name (pass the name {name!r} or that Agent)"
            return name, None
        if callable(node):
            named = [s.name for s in self.nodes() if s.fn is node]
            if len(named) == 1:
                return named[0], None
            if len(named) > 1:
                return node, f"{node!r} was added as several nodes ({', '.join(named)}); pass the node name"
        return node, f"{node!r} is not a node: pass a node name (str), or the Agent or function added"

    def add_edge(
        self,
        source: str | Agent | Callable[..., Any],
        target: str | Agent | Callable[..., Any],
        *,
        condition: Condition | None = None,
        message_type: type[Message] | tuple[type[Message], ...] | None = None,
        label: str | None = None,
    ) -> Workflow:
        """Route ``source``'s output messages to ``target`` when ``message_type`` matches and ``condition`` holds.

        ``source`` and ``target`` are node names, or the ``Agent`` / function given to ``add_node``. ``condition``
        is a plain (sync) function of the message returning a ``bool``.
        """
        self._version += 1
        (source, source_problem), (target, target_problem) = self._resolve(source), self._resolve(target)
        where = f"edge {source} → {target}"
        if source_problem or target_problem:
            self._build_problems.extend(f"{where}: {p}" for p in (source_problem, target_problem) if p)
            return self
        if condition is not None and not callable(condition):
            self._build_problems.append(f"{where}: condition must be callable")
            condition = None
        elif condition is not None and _is_async_callable(condition):
            self._build_problems.append(
                f"{where}: condition {getattr(condition, '__name__', condition)!r} is async; conditions must be "
                "plain sync functions returning bool (an awaitable would always count as true)"
            )
        elif condition is not None and not _takes_one_argument(condition):
            self._build_problems.append(f"{where}: condition must take one argument, the message")
        if self.graph.has_edge(source, target):
            self._build_problems.append(f"{where}: duplicate edge")
            return self
        for end in (source, target):
            if end not in self.graph:
                self._build_problems.append(f"{where}: unknown node {end!r} (add_node it first)")
                return self
        self.graph.add_edge(source, target, spec=EdgeSpec(source, target, condition, message_type, label))
        return self

    def set_entry(self, *names: str | Agent) -> Workflow:
        """The node(s) that receive the run input (names or added Agents). Default: every node without
        predecessors."""
        self._version += 1
        self.entries = [n.name if isinstance(n, Agent) else n for n in names]
        return self

    # ---- reading --------------------------------------------------------------------------------
    def node(self, name: str) -> NodeSpec:
        """The ``NodeSpec`` of the node called ``name``; ``UserError`` if there is none."""
        try:
            return self.graph.nodes[name]["spec"]  # type: ignore[no-any-return]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            known = ", ".join(repr(n) for n in self.graph.nodes)
            raise UserError(
                f"workflow {self.name!r}: unknown node {name!r}",
                hint=f"known nodes: {known}" if known else "the workflow has no nodes yet (add_node first)",
            ) from None

    def nodes(self) -> list[NodeSpec]:
        """Every node's ``NodeSpec``, in the order they were added."""
        return [d["spec"] for _, d in self.graph.nodes(data=True)]

    def edges(self) -> list[EdgeSpec]:
        """Every edge's ``EdgeSpec``, in the order they were added (grouped by source node)."""
        return [d["spec"] for _, _, d in self.graph.edges(data=True)]

    def entry_nodes(self) -> list[str]:
        """The declared entries, else the nodes without incoming edges (cached per graph version)."""
        if self.entries:
            return list(self.entries)
        cached = self._entry_cache
        if cached is None or cached[0] != self._version:
            cached = self._entry_cache = (self._version, [n for n in self.graph.nodes if self.graph.in_degree(n) == 0])
        return list(cached[1])

    # ---- validation -----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every problem ``validate()`` would report, one line each naming the node or edge."""
        out = list(self._build_problems)
        g = self.graph
        if not g.nodes:
            return [*out, "workflow has no nodes (add_node first)"]
        declared = self.entry_nodes()
        for e in declared:
            if e not in g:
                out.append(f"entry {e!r}: unknown node")
        entries = [e for e in declared if e in g]
        if not declared:
            out.append("no entry node: every node has a predecessor; call set_entry('name')")
        if entries:  # (with only unknown entries declared, reachability would just repeat that error)
            # one search from all entries along edges and on_exhausted redirects (linear in the graph)
            reach: set[str] = set(entries)
            stack = list(reach)
            while stack:
                n = stack.pop()
                redirect = g.nodes[n]["spec"].on_exhausted
                for m in [*g.successors(n), *([redirect] if redirect in g else [])]:
                    if m not in reach:
                        reach.add(m)
                        stack.append(m)
            for n in g.nodes:
                if n not in reach:
                    out.append(f"node {n!r}: unreachable from the entry node(s) {', '.join(entries)}")
        for spec in self.nodes():
            preds = list(g.predecessors(spec.name))
            if spec.fn is not None and len(preds) > 1 and spec.join == "all" and not spec.takes_list:
                out.append(
                    f"node {spec.name!r}: joins {len(preds)} predecessors with 'all' but takes one message; "
                    "annotate its parameter as list[...] or use join='any'"
                )
            if spec.on_exhausted is not None:
                if spec.on_exhausted not in g:
                    out.append(f"node {spec.name!r}: on_exhausted names unknown node {spec.on_exhausted!r}")
                if spec.max_visits is None:
                    out.append(f"node {spec.name!r}: on_exhausted needs max_visits")
        out.extend(self._redirect_cycle_problems())
        for edge in self.edges():
            out.extend(self._edge_type_problems(edge))
        out.extend(self._cycle_problems())
        return out

    def _edge_type_problems(self, edge: EdgeSpec) -> list[str]:
        src, dst = self.node(edge.source), self.node(edge.target)
        produced = src.output_types
        if edge.message_type is not None:
            filt = edge.message_type if isinstance(edge.message_type, tuple) else (edge.message_type,)
            bad = [f for f in filt if not (inspect.isclass(f) and issubclass(f, Message))]
            if bad:
                return [f"{edge.describe()}: message_type must be Message subclasses, got {bad!r}"]
            if not any(_compatible(f, p) for f in filt for p in produced):
                names = ", ".join(p.type_name for p in produced)
                return [
                    f"{edge.describe()}: filter {', '.join(f.type_name for f in filt)} never matches what "
                    f"{edge.source!r} produces ({names})"
                ]
            produced = filt
        if not any(_compatible(p, a) for p in produced for a in dst.input_types):
            return [
                f"{edge.describe()}: {edge.source!r} produces {', '.join(p.type_name for p in produced)} but "
                f"{edge.target!r} accepts {', '.join(a.type_name for a in dst.input_types)}"
            ]
        return []

    def _redirect_cycle_problems(self) -> list[str]:
        """``on_exhausted`` chains that come back to where they started: once every node on such a chain has
        used its visits, a message would be redirected round it for ever."""
        g = self.graph
        order = {name: i for i, name in enumerate(g.nodes)}
        done: set[str] = set()
        circles: list[list[str]] = []
        for start in g.nodes:  # each node redirects to at most one: follow each chain once (linear)
            path: list[str] = []
            at: dict[str, int] = {}
            n: str | None = start
            while n is not None and n in g and n not in done and n not in at:
                at[n] = len(path)
                path.append(n)
                n = g.nodes[n]["spec"].on_exhausted
            if n is not None and n in at:  # a circle not seen before, named from its first node added
                circle = path[at[n] :]
                first = min(circle, key=order.__getitem__)
                i = circle.index(first)
                circles.append(circle[i:] + circle[:i])
            done.update(path)
        circles.sort(key=lambda c: order[c[0]])
        return [
            f"node {c[0]!r}: on_exhausted redirects in a circle ({' → '.join([*c, c[0]])}); once all of them have "
            "used their visits a message would go round for ever: redirect to a node outside the circle"
            for c in circles
        ]

    def _cycle_problems(self) -> list[str]:
        out: list[str] = []
        seen: set[frozenset[str]] = set()
        for i, cycle in enumerate(nx.simple_cycles(self.graph)):
            if i > 200:
                break
            key = frozenset(cycle)
            if key in seen:
                continue
            seen.add(key)
            path = " → ".join([*cycle, cycle[0]])
            edges = [self.graph.edges[a, b]["spec"] for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
            if not any(e.condition is not None for e in edges):
                out.append(f"cycle {path}: no edge has a condition, so it never ends; add condition=... to one edge")
            if not any(self.node(n).max_visits is not None for n in cycle):
                out.append(f"cycle {path}: no node has a visit bound; add max_visits=N to one of its nodes")
        return out

    def validate(self) -> Workflow:
        """Raise ``WorkflowValidationError`` listing every problem; return ``self`` when there is none."""
        if self._validated_version == self._version:
            return self
        problems = self.problems()
        if problems:
            raise WorkflowValidationError(problems, hint="fix the listed nodes/edges; see Workflow docs")
        self._validated_version = self._version
        return self

    # ---- export ---------------------------------------------------------------------------------
    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart`` of the graph: entries, node kinds and output types, edge conditions."""

        ids = {name: f"n{i}" for i, name in enumerate(self.graph.nodes)}  # unique, whatever the names hold

        def nid(name: str) -> str:
            return ids[name]

        lines = ["flowchart TD", "    __start__((start))"]
        for spec in self.nodes():
            out = "/".join(_type_label(t) for t in spec.output_types)
            extra = []
            if spec.join == "any" and self.graph.in_degree(spec.name) > 1:
                extra.append("join=any")
            if spec.max_visits is not None:
                extra.append(f"max {spec.max_visits}")
            suffix = f" ({', '.join(extra)})" if extra else ""
            shape = f'["{_mermaid_text(str(spec.name))}<br/>{spec.kind} → {_mermaid_text(out + suffix)}"]'
            lines.append(f"    {nid(spec.name)}{shape}")
        for e in self.entry_nodes():
            if e in self.graph:
                lines.append(f"    __start__ --> {nid(e)}")
        for edge in self.edges():
            label = None if edge.label is None else str(edge.label)
            if label is None and edge.condition is not None:
                cname = str(getattr(edge.condition, "__name__", "condition"))
                label = "if" if cname == "<lambda>" else cname
            if edge.message_type is not None:
                types_ = edge.message_type if isinstance(edge.message_type, tuple) else (edge.message_type,)
                tname = "/".join(_type_label(t) for t in types_)
                label = f"{label} {tname}" if label else tname
            text = _mermaid_label(label) if label else ""
            arrow = f"-.->|{text}|" if edge.condition is not None else (f"-->|{text}|" if label else "-->")
            lines.append(f"    {nid(edge.source)} {arrow} {nid(edge.target)}")
        for spec in self.nodes():
            if spec.on_exhausted in self.graph:
                lines.append(f"    {nid(spec.name)} -.->|exhausted| {nid(spec.on_exhausted)}")
        return "\n".join(lines)

    # ---- running (see tq_agents.scheduler) -----------------------------------------------------------
    def start(self, input: str | Message, **options: Any) -> Run:
        """Validate and start a run in the running event loop; returns a ``Run`` handle at once.

        Options are those of ``tq_agents.scheduler.Run``: ``store``, ``model``, ``max_turns``, ``max_tokens``,
        ``deadline_s``, ``retry``, ``run_id``.
        """
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise UserError(
                "Workflow.start() needs a running event loop, and none is running",
                hint="call it from async code (inside `asyncio.run(...)`), or use `workflow.run_sync(...)` "
                "from plain code",
            ) from None
        from tq_agents.scheduler import start_run

        return start_run(self, input, **options)

    async def run(
        self,
        input: str | Message,
        *,
        store: RunStore | str | None = None,
        model: ChatModel | None = None,
        max_turns: int | None = None,
        max_tokens: int | None = None,
        deadline_s: float | None = None,
        **options: Any,
    ) -> RunResult:
        """Run to the end and return the ``RunResult`` (status, output, usage). Budgets end it with a status.

        Args:
            input: A string (becomes ``UserInput``) or a ``Message`` for the entry node(s).
            store: A ``RunStore``, or a path to a SQLite file (opened and closed for this run), or ``None`` for
                the per-user default SQLite store (``default_store_path()``; ``$TQ_STORE`` overrides). Pass
                ``MemoryRunStore()`` for an in-memory log (nothing survives the process).
            model: Default model for agents that have none (overrides the workflow's).
            max_turns: Stop (status ``max_turns``) before starting more than this many turns.
            max_tokens: Stop (status ``max_tokens``) once prompt + completion tokens reach this.
            deadline_s: Stop (status ``deadline``) after this many seconds, cancelling running turns.
            options: ``retry=RetryPolicy(...)``, ``run_id=...``.

        The first turn runs in the awaiting task itself (no extra task); cancelling that task cancels the run
        (status ``cancelled``, resumable) and raises ``CancelledError``.
        """
        from tq_agents.scheduler import start_run

        run = start_run(
            self,
            input,
            store=store,
            model=model,
            max_turns=max_turns,
            max_tokens=max_tokens,
            deadline_s=deadline_s,
            _inline=True,
            **options,
        )
        return await run._drive()

    def run_sync(self, input: str | Message, **options: Any) -> RunResult:
        """``run`` for code outside an event loop (``asyncio.run`` underneath); async code awaits ``run``."""
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop running: the normal case (run below, outside this handler, so errors carry no context)
        else:
            raise UserError("run_sync() was called inside a running event loop", hint="use `await workflow.run(...)`")
        from tq_agents.scheduler import run_main

        return run_main(lambda: self.run(input, **options))
