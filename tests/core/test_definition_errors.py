"""Bad definitions fail early with the project's own errors, naming the option and what was expected.

Covers ``@tool`` (positional-only parameters, partials and callable objects, option types, star parameters,
defaults that do not match their annotation), ``ToolError`` field paths for union-typed parameters, the
``Agent`` constructor and ``Agent.run`` input, ``RetryPolicy`` fields, and docstrings of the model interface.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import math
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from tq_agents import (
    Agent,
    ConfigError,
    TextMessage,
    ToolDefinitionError,
    ToolError,
    ToolResult,
    UserError,
    UserInput,
    tool,
)
from tq_agents.agent import RetryPolicy, TurnContext
from tq_agents.models.base import ChatModel, ChatRequest, Usage
from tq_agents.testing import ScriptedModel, call

pytestmark = pytest.mark.timeout(60)


# ---- @tool definitions ------------------------------------------------------------------------


def test_positional_only_parameter_is_refused_at_definition() -> None:
    def lookup(order_id: str, /) -> str:
        """Look up an order."""
        return order_id

    with pytest.raises(ToolDefinitionError, match=r"tool 'lookup': parameter 'order_id' is positional-only") as ei:
        tool(lookup)
    assert ei.value.hint and "/" in ei.value.hint


def scale(x: int, factor: int) -> int:
    """Scale a number.

    Args:
        x: The number.
        factor: The factor.
    """
    return x * factor


def test_partial_without_name_asks_for_one() -> None:
    with pytest.raises(ToolDefinitionError, match=r"name=") as ei:
        tool(functools.partial(scale, factor=2))
    assert "partial" in str(ei.value)


def test_partial_with_name_works_and_hides_bound_arguments() -> None:
    t = tool(name="double")(functools.partial(scale, factor=2))
    assert t.name == "double"
    assert t.description == "Scale a number."
    assert list(t.parameters["properties"]) == ["x"]  # factor is bound: not the model's to choose
    assert t.parameters["properties"]["x"]["description"] == "The number."
    r = t.call_sync({"x": 3})
    assert isinstance(r, ToolResult) and r.value == 6
    r2 = t.call_sync({"x": 3, "factor": 5})
    assert isinstance(r2, ToolError) and set(r2.fields) == {"factor"}


class Adder:
    """Add a number to a base."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.name = "not the tool name"  # instance attributes must not leak onto the Tool

    def __call__(self, a: int) -> int:
        """Add.

        Args:
            a: The number to add.
        """
        return self.base + a


class AsyncAdder:
    async def __call__(self, a: int) -> int:
        """Add one, asynchronously."""
        await asyncio.sleep(0)
        return a + 1


def test_callable_instance_needs_a_name_then_works() -> None:
    with pytest.raises(ToolDefinitionError, match=r"name=") as ei:
        tool(Adder(1))
    assert "Adder" in str(ei.value)
    t = tool(Adder(10), name="add")
    assert t.name == "add"
    assert t.description == "Add a number to a base."
    assert t.parameters["properties"]["a"] == {"type": "integer", "description": "The number to add."}
    r = t.call_sync({"a": 5})
    assert isinstance(r, ToolResult) and r.value == 15
    ta = tool(AsyncAdder(), name="add_one")
    assert ta.description == "Add one, asynchronously."
    r2 = ta.call_sync({"a": 1})
    assert isinstance(r2, ToolResult) and r2.value == 2


def test_lambda_without_name_asks_for_one() -> None:
    with pytest.raises(ToolDefinitionError, match=r"name="):
        tool(lambda x: x)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"name": 5}, r"name must be a str, got 5 \(int\)"),
        ({"description": 3}, r"description must be a str, got 3 \(int\)"),
        ({"timeout": "5"}, r"timeout must be a positive number of seconds, got '5' \(str\)"),
        ({"timeout": True}, r"timeout must be a positive number of seconds, got True \(bool\)"),
        ({"timeout": 0}, r"timeout must be a positive number of seconds, got 0"),
        ({"timeout": math.inf}, r"timeout must be a positive number of seconds, got inf"),
        ({"timeout": math.nan}, r"timeout must be a positive number of seconds, got nan"),
    ],
)
def test_tool_options_are_type_checked(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ToolDefinitionError, match=match):
        tool(**options)(scale)
    with pytest.raises(ToolDefinitionError, match=match):
        tool(scale, **options)


def test_star_parameters_message_shows_the_right_star() -> None:
    def va(*args: int) -> int:
        """x."""
        return 0

    def vk(**kw: int) -> int:
        """x."""
        return 0

    with pytest.raises(ToolDefinitionError) as ei:
        tool(va)
    assert "*args" in str(ei.value) and "**args" not in str(ei.value)
    with pytest.raises(ToolDefinitionError) as ek:
        tool(vk)
    assert "**kw" in str(ek.value)


def test_default_that_does_not_match_the_annotation_is_refused() -> None:
    def bad_default(x: int = "abc") -> int:  # type: ignore[assignment]
        """D."""
        return x

    with pytest.raises(ToolDefinitionError) as ei:
        tool(bad_default)
    text = str(ei.value)
    assert "tool 'bad_default'" in text and "parameter 'x'" in text and "'abc'" in text and "int" in text

    def bad_field_default(n: Annotated[int, Field(gt=0)] = 0) -> int:
        """D."""
        return n

    with pytest.raises(ToolDefinitionError, match=r"parameter 'n'.*greater than 0"):
        tool(bad_field_default)

    def bad_literal(speed: Literal["slow", "fast"] = "warp") -> str:  # type: ignore[assignment]
        """D."""
        return speed

    with pytest.raises(ToolDefinitionError, match=r"parameter 'speed'.*'warp'"):
        tool(bad_literal)

    def bad_field_object(x: int = Field(default="abc")) -> int:  # type: ignore[assignment]
        """D."""
        return x

    with pytest.raises(ToolDefinitionError, match=r"parameter 'x'"):
        tool(bad_field_object)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int = 0


def test_legitimate_defaults_still_work() -> None:
    @tool
    def fine(
        a: int | None = None,
        b: str | None = None,
        c: Colour = Colour.RED,
        d: Literal["x", "y"] = "y",
        e: float = 1,
        f: list[str] = Field(default_factory=list),
        g: Point = Point(),
        h: Annotated[int, Field(ge=0, description="h")] = 0,
        i: str = Field(default="s", description="i"),
    ) -> dict[str, Any]:
        """Fine."""
        return {"a": a, "b": b, "c": c.value, "d": d, "e": e, "f": f, "g": g.x, "h": h, "i": i}

    r = fine.call_sync({})
    assert isinstance(r, ToolResult), r
    assert r.value == {"a": None, "b": None, "c": "red", "d": "y", "e": 1, "f": [], "g": 0, "h": 0, "i": "s"}


# ---- ToolError field paths for unions ---------------------------------------------------------


class P(BaseModel):
    a: int


class Line(BaseModel):
    sku: str
    qty: int


class Note(BaseModel):
    text: str


def test_union_member_tags_are_not_reported_as_fields() -> None:
    @tool
    def u(x: int | list[int], y: P | None = None, z: dict[int, str] | None = None) -> str:
        """U."""
        return "ok"

    r = u.call_sync({"x": "abc", "y": {"a": "q"}, "z": {"1": 5}})
    assert isinstance(r, ToolError)
    assert set(r.fields) == {"x", "y.a", "z.1"}
    assert r.fields["x"] == 'expected int or list[int]; got "abc"'
    assert "3 invalid fields" in r.content
    assert "x.int" not in r.content and "list[int]`" not in r.content


def test_union_paths_keep_nested_models_and_list_items() -> None:
    @tool
    def order(items: list[Line | Note], main: int | Line = 0) -> str:
        """Order."""
        return "ok"

    r = order.call_sync({"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": "many"}], "main": {"sku": "c"}})
    assert isinstance(r, ToolError)
    # items[1] matched Line's shape: its bad qty is reported (Note's missing `text` too, as that member's need);
    # main is an object: Line's missing qty is reported, not "expected int"
    assert "items[1].qty" in r.fields and '"many"' in r.fields["items[1].qty"]
    assert "main.qty" in r.fields and r.fields["main.qty"] == "required field is missing"
    assert "main" not in r.fields
    assert not any(".Line" in k or ".Note" in k or ".int" in k for k in r.fields)

    r2 = order.call_sync({"items": [], "main": [1]})
    assert isinstance(r2, ToolError) and r2.fields == {"main": "expected int or Line; got [1]"}


def test_union_of_literal_and_constrained_types_reads_well() -> None:
    @tool
    def pick(
        mode: Literal["a", "b"] | int = 0,
        code: Annotated[str, Field(pattern=r"^[A-Z]\d+$")] | int = 0,
        n: int | str | None = None,
    ) -> str:
        """Pick."""
        return "ok"

    r = pick.call_sync({"mode": "c", "code": "x1", "n": [1]})
    assert isinstance(r, ToolError)
    assert r.fields["mode"] == "expected 'a' or 'b' or int; got \"c\""
    assert r.fields["code"].startswith("expected str (String should match pattern") and "or int" in r.fields["code"]
    assert r.fields["n"] == "expected int or str; got [1]"


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    bark: str


class AnswerWithUnion(TextMessage):
    score: int | list[int] = 0


def test_discriminated_union_paths_drop_the_tag() -> None:
    @tool
    def pet(p: Annotated[Cat | Dog, Field(discriminator="kind")]) -> str:
        """Pet."""
        return "ok"

    r = pet.call_sync({"p": {"kind": "cat", "lives": "nine"}})
    assert isinstance(r, ToolError) and set(r.fields) == {"p.lives"}


def test_structured_output_errors_drop_union_tags() -> None:
    agent = Agent("a", output_type=AnswerWithUnion)
    reason = agent.parse_output('{"text": "t", "score": "high"}')
    assert isinstance(reason, str)
    assert '`score`: expected int or list[int]; got "high"' in reason and "score.int" not in reason


# ---- Agent(...) -------------------------------------------------------------------------------


@tool
def good(x: int) -> int:
    """G."""
    return x


def _model() -> ScriptedModel:
    return ScriptedModel({"*": [call("good", x=1), "done"]})


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((None,), {}, r"agent None: name must be a non-empty str, got None"),
        ((5,), {}, r"agent 5: name must be a non-empty str, got 5 \(int\)"),
        (("",), {}, r"agent '': name must be a non-empty str"),
        (("  ",), {}, r"agent '  ': name must be a non-empty str"),
        (("a", None), {}, r"agent 'a': instructions must be a str, got None"),
        (("a",), {"tools": good}, r"agent 'a': tools must be a list or tuple of tools, got a Tool"),
        (("a",), {"tools": "good"}, r"agent 'a': tools must be a list or tuple of tools, got 'good' \(str\)"),
        (("a",), {"tools": {"good": good}}, r"agent 'a': tools must be a list or tuple of tools, got .*dict"),
        (("a",), {"max_tool_iterations": -1}, r"agent 'a': max_tool_iterations must be an int >= 0, got -1"),
        (("a",), {"max_tool_iterations": "3"}, r"agent 'a': max_tool_iterations must be an int >= 0, got '3'"),
        (("a",), {"max_tool_iterations": True}, r"agent 'a': max_tool_iterations must be an int >= 0, got True"),
        (("a",), {"max_output_retries": -1}, r"agent 'a': max_output_retries must be an int >= 0, got -1"),
        (("a",), {"max_output_retries": 1.5}, r"agent 'a': max_output_retries must be an int >= 0, got 1.5"),
        (("a",), {"temperature": "hot"}, r"agent 'a': temperature must be a number >= 0, got 'hot' \(str\)"),
        (("a",), {"temperature": -0.1}, r"agent 'a': temperature must be a number >= 0, got -0.1"),
        (("a",), {"temperature": True}, r"agent 'a': temperature must be a number >= 0, got True"),
        (("a",), {"temperature": math.nan}, r"agent 'a': temperature must be a number >= 0, got nan"),
        (("a",), {"max_tokens": 0}, r"agent 'a': max_tokens must be None or an int >= 1, got 0"),
        (("a",), {"max_tokens": "x"}, r"agent 'a': max_tokens must be None or an int >= 1, got 'x'"),
        (("a",), {"enable_thinking": "yes"}, r"agent 'a': enable_thinking must be None or a bool, got 'yes'"),
        (("a",), {"tool_choice": ["auto"]}, r"agent 'a': tool_choice must be None or a str"),
        (("a",), {"model": "qwen-7b"}, r"agent 'a': model must be a ChatModel .*got 'qwen-7b' \(str\)"),
        (("a",), {"model": object()}, r"agent 'a': model must be a ChatModel \(an object with an async complete"),
    ],
)
def test_agent_constructor_checks_its_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Agent(*args, **kwargs)


def test_agent_model_string_gets_a_hint_on_building_a_model() -> None:
    with pytest.raises(ConfigError) as ei:
        Agent("a", model="qwen-7b")  # type: ignore[arg-type]
    hint = ei.value.hint or ""
    assert "LocalQwen" in hint and "OpenAICompatible" in hint


def test_agent_tool_definition_errors_name_the_element() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        """U."""

    with pytest.raises(ToolDefinitionError, match=r"^agent 'a': tools\[1\]: tool 'untyped': parameter 'x'"):
        Agent("a", tools=[good, untyped])
    with pytest.raises(ToolDefinitionError, match=r"^agent 'a': tools\[0\]: @tool needs a function, got int"):
        Agent("a", tools=[5])


def test_agent_accepts_good_arguments() -> None:
    a = Agent("a", tools=(good,), max_tool_iterations=0, max_output_retries=0, temperature=1, max_tokens=5)
    assert list(a.tools) == ["good"] and a.max_tool_iterations == 0
    assert list(Agent("b", tools=None).tools) == []  # None: no tools
    assert Agent("c", model=_model()).model is not None


def test_max_tool_iterations_zero_means_no_tool_rounds() -> None:
    res = asyncio.run(Agent("a", model=_model(), tools=[good], max_tool_iterations=0).run_turn([UserInput(text="hi")]))
    assert res.status == "failed" and "max_tool_iterations=0" in res.reason


def test_run_turn_does_not_raise_for_bad_temperature_because_the_constructor_refuses_it() -> None:
    # before: Agent(temperature="hot") built fine and run_turn raised pydantic's ValidationError
    with pytest.raises(ConfigError, match="temperature"):
        Agent("a", model=_model(), temperature="hot")  # type: ignore[arg-type]
    res = asyncio.run(Agent("a", model=_model(), tools=[good], temperature=0.7).run_turn([UserInput(text="hi")]))
    assert res.status == "completed"


def test_run_turn_refuses_a_model_that_is_not_a_model() -> None:
    # before: AttributeError: 'str' object has no attribute 'complete' escaped run_turn
    agent = Agent("a")
    with pytest.raises(ConfigError, match=r"agent 'a': model must be a ChatModel .*got 'qwen-7b' \(str\)") as ei:
        asyncio.run(agent.run_turn([UserInput(text="hi")], model="qwen-7b"))  # type: ignore[arg-type]
    assert "LocalQwen" in (ei.value.hint or "")
    with pytest.raises(ConfigError, match=r"agent 'a': model must be a ChatModel"):
        asyncio.run(agent.run("hi", model=object()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (5, r"agent 'a': run\(\) input must be a str, a Message or a sequence of Messages, got 5 \(int\)"),
        (None, r"got None"),
        ([1], r"input\[0\] must be a Message, got 1 \(int\)"),
        ([TextMessage(text="x"), "y"], r"input\[1\] must be a Message, got 'y' \(str\)"),
        ([], r"agent 'a': run\(\) needs at least one input message"),
        ({"text": "x"}, r"got .*dict"),
    ],
)
def test_agent_run_checks_its_input(value: Any, match: str) -> None:
    with pytest.raises(UserError, match=match):
        asyncio.run(Agent("a", model=_model()).run(value))


def test_agent_run_accepts_str_message_and_sequences() -> None:
    agent = Agent("a", model=ScriptedModel({"a": ["one", "two", "three"]}))
    assert asyncio.run(agent.run("hi")).text == "one"  # type: ignore[attr-defined]
    assert asyncio.run(agent.run(TextMessage(text="hi"))).text == "two"  # type: ignore[attr-defined]
    assert asyncio.run(agent.run((TextMessage(text="hi"),))).text == "three"  # type: ignore[attr-defined]


# ---- RetryPolicy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attempts": 0}, r"RetryPolicy: attempts must be an int >= 1, got 0"),
        ({"attempts": "3"}, r"RetryPolicy: attempts must be an int >= 1, got '3' \(str\)"),
        ({"attempts": True}, r"RetryPolicy: attempts must be an int >= 1, got True"),
        ({"initial_s": -1}, r"RetryPolicy: initial_s must be a number of seconds >= 0, got -1"),
        ({"initial_s": "0.5"}, r"RetryPolicy: initial_s must be a number of seconds >= 0, got '0.5'"),
        ({"max_s": math.nan}, r"RetryPolicy: max_s must be a number of seconds >= 0, got nan"),
        ({"max_s": None}, r"RetryPolicy: max_s must be a number of seconds >= 0, got None"),
    ],
)
def test_retry_policy_checks_its_fields(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RetryPolicy(**kwargs)


def test_retry_policy_good_values_and_turn_context_type() -> None:
    assert RetryPolicy(1, 0, 0).attempts == 1
    assert RetryPolicy(attempts=2, initial_s=0.1, max_s=1).max_s == 1
    with pytest.raises(ConfigError, match=r"TurnContext: retry must be a RetryPolicy, got 3 \(int\)"):
        TurnContext(3)  # type: ignore[arg-type]


# ---- docstrings ---------------------------------------------------------------------------------


def _doc(obj: Any) -> str:
    if isinstance(obj, property):
        obj = obj.fget
    return inspect.getdoc(obj) or ""


def test_model_interface_is_documented() -> None:
    complete_doc = _doc(vars(ChatModel)["complete"])
    for needed in ("ChatResponse", "TransientModelError", "ModelError", "concurrent"):
        assert needed in complete_doc, needed
    assert _doc(vars(ChatModel)["model_name"])
    assert _doc(vars(ChatRequest)["tool_names"])
    assert _doc(vars(ChatRequest)["openai_messages"])
    assert _doc(vars(Usage)["total_tokens"])
    assert _doc(vars(RetryPolicy)["retrying"])


def test_public_methods_in_agent_and_model_base_have_docstrings() -> None:
    import tq_agents.agent as agent_mod
    import tq_agents.models.base as base_mod

    missing = []
    for mod in (agent_mod, base_mod):
        for cname, cls in vars(mod).items():
            if not inspect.isclass(cls) or cls.__module__ != mod.__name__:
                continue
            for mname, member in vars(cls).items():
                if mname.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member) and not (member.__doc__ or "").strip():
                    missing.append(f"{cname}.{mname}")
    assert not missing, missing
