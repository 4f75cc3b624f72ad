"""Tool registry: schema derivation, validation messages, lookup, invocation, toolsets, redaction."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal, Optional

import anyio
import pytest

from agentctl.errors import ToolError, UsageError
from agentctl.services.llm.base import ToolSpec
from agentctl.services.tools import (
    SchemaError,
    Tool,
    ToolContext,
    ToolRegistry,
    default_registry,
    derive_schema,
    validate,
)


def make_ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(agent_id="a1", workspace=tmp_path, run_id="r1")


# ---------------------------------------------------------------- derivation


def test_schema_of_scalar_parameters_marks_defaults_optional() -> None:
    def f(ctx: ToolContext, name: str, count: int, ratio: float = 0.5, loud: bool = False) -> None: ...

    schema = derive_schema(f)
    assert schema == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number", "default": 0.5},
            "loud": {"type": "boolean", "default": False},
        },
        "required": ["name", "count"],
        "additionalProperties": False,
    }


def test_schema_of_containers_literals_and_optionals() -> None:
    def f(
        tags: list[str],
        opts: dict[str, Any],
        mode: Literal["read", "write"],
        limit: Optional[int] = None,
        level: int | None = 3,
        nums: list[list[float]] | None = None,
        anything: Any = None,
    ) -> None: ...

    props = derive_schema(f)["properties"]
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["opts"] == {"type": "object"}
    assert props["mode"] == {"enum": ["read", "write"], "type": "string"}
    assert props["limit"] == {"type": ["integer", "null"], "default": None}
    assert props["level"] == {"type": ["integer", "null"], "default": 3}
    assert props["nums"] == {
        "type": ["array", "null"],
        "items": {"type": "array", "items": {"type": "number"}},
        "default": None,
    }
    assert props["anything"] == {"default": None}
    assert derive_schema(f)["required"] == ["tags", "opts", "mode"]


def test_schema_refuses_var_kwargs_and_unknown_types() -> None:
    def kw(**kwargs: Any) -> None: ...

    class Thing: ...

    def odd(x: Thing) -> None: ...

    with pytest.raises(UsageError):
        derive_schema(kw)
    with pytest.raises(UsageError):
        derive_schema(odd)


def test_decorator_takes_description_from_first_docstring_paragraph() -> None:
    reg = ToolRegistry()

    @reg.tool("demo/greet")
    def greet(name: str) -> str:
        """Say hello
        to someone.

        Longer text that the model does not need.
        """
        return f"hi {name}"

    tool = reg.get("demo/greet")
    assert tool.description == "Say hello to someone."
    assert tool.spec() == ToolSpec("demo/greet", "Say hello to someone.", tool.parameters)
    assert tool.takes_ctx is False


def test_bad_and_duplicate_names_are_refused() -> None:
    reg = ToolRegistry()
    reg.tool("ok/name:v1")(lambda: None)
    with pytest.raises(ValueError, match="bad tool name"):
        reg.tool("has space")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.tool("ok/name:v1")(lambda: None)


# ---------------------------------------------------------------- validation


def test_validation_errors_name_key_path_and_expected_vs_got() -> None:
    reg = default_registry()
    with pytest.raises(ToolError, match=r"^fs/write: arguments\.path: expected string, got integer$"):
        reg.validate("fs/write", {"path": 3, "content": "x"})
    with pytest.raises(ToolError, match=r"fs/write: arguments\.content: missing required argument"):
        reg.validate("fs/write", {"path": "a"})
    with pytest.raises(ToolError, match=r"fs/read: arguments\.nope: unknown argument \(allowed: path\)"):
        reg.validate("fs/read", {"path": "a", "nope": 1})
    with pytest.raises(ToolError, match=r"fs/read: arguments: expected object, got array"):
        reg.validate("fs/read", ["a"])


def test_validation_of_nested_items_bools_enums_and_bounds() -> None:
    schema = {
        "type": "object",
        "properties": {
            "files": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "mode": {"enum": ["a", "b"]},
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
        },
    }
    with pytest.raises(SchemaError) as err:
        validate(schema, {"files": [{"n": 1}, {"n": True}]})
    assert str(err.value) == "arguments.files[1].n: expected integer, got boolean"
    with pytest.raises(SchemaError, match=r"arguments\.mode: expected one of 'a', 'b', got 'c'"):
        validate(schema, {"mode": "c"})
    with pytest.raises(SchemaError, match=r"arguments\.size: expected <= 10, got 11"):
        validate(schema, {"size": 11})
    with pytest.raises(SchemaError, match=r"arguments\.size: expected >= 1, got 0"):
        validate(schema, {"size": 0})
    # integer is not number, but an integral float is accepted as an integer
    assert validate(schema, {"size": 4.0}) == {"size": 4}
    with pytest.raises(SchemaError, match="expected integer, got number"):
        validate(schema, {"size": 4.5})
    assert validate({"type": "number"}, 3) == 3
    with pytest.raises(SchemaError, match="expected number, got boolean"):
        validate({"type": "number"}, True)


def test_validation_fills_defaults() -> None:
    reg = default_registry()
    assert reg.validate("fs/list", {}) == {"path": "."}
    assert reg.validate("shell/run", {"command": "ls"}) == {"command": "ls", "timeout": 30.0}


def test_unknown_tool_suggests_the_closest_name() -> None:
    reg = default_registry()
    with pytest.raises(ToolError, match=r"unknown tool 'fs/wirte'; did you mean 'fs/write'\?"):
        reg.get("fs/wirte")
    with pytest.raises(ToolError) as err:
        reg.get("zzzzzzzz")
    assert str(err.value) == "unknown tool 'zzzzzzzz'"
    assert "fs/read" in reg and "fs/nope" not in reg


# ---------------------------------------------------------------- invocation


@pytest.mark.anyio
async def test_sync_tools_run_in_a_thread_unless_declared_inline(tmp_path: Path) -> None:
    reg = ToolRegistry()
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    @reg.tool("t/async")
    async def a(ctx: ToolContext, x: int) -> int:
        await anyio.sleep(0)
        seen["async_agent"] = ctx.agent_id
        return x + 1

    @reg.tool("t/sync")
    def s(ctx: ToolContext, text: str) -> str:
        seen["sync_thread"] = threading.get_ident()
        return text.upper() + ctx.run_id

    @reg.tool("t/inline", inline=True)
    def i(x: int, y: int = 10) -> int:
        seen["inline_thread"] = threading.get_ident()
        return x * y

    ctx = make_ctx(tmp_path)
    assert await reg.invoke("t/async", {"x": 1}, ctx) == 2
    assert await reg.invoke("t/sync", {"text": "hi"}, ctx) == "HIr1"
    assert await reg.invoke("t/inline", {"x": 3}, ctx) == 30
    assert seen["async_agent"] == "a1"
    assert seen["sync_thread"] != loop_thread
    assert seen["inline_thread"] == loop_thread
    with pytest.raises(ToolError, match="expected integer, got string"):
        await reg.invoke("t/inline", {"x": "3"}, ctx)


def test_explicit_schema_and_register_detect_ctx() -> None:
    reg = ToolRegistry()

    def fn(ctx: ToolContext, **kw: Any) -> Any:
        return kw

    reg.register(Tool("x/raw", "raw", {"type": "object", "properties": {}}, fn, is_async=False))
    assert reg.get("x/raw").takes_ctx is True
    assert reg.validate("x/raw", {"free": 1}) == {"free": 1}  # explicit schema allows extras


# ---------------------------------------------------------------- toolsets and redaction


def test_toolsets_expand_names_globs_and_named_sets() -> None:
    reg = default_registry()
    reg.tool("web/fetch")(lambda: None)
    assert reg.toolset("all") == frozenset(reg.names())
    assert reg.toolset("none") == frozenset()
    assert reg.toolset("tiny") == {"fs/read", "fs/list", "agent/send", "agent/done"}
    assert reg.toolset("work") == {
        "fs/read", "fs/write", "fs/append", "fs/list", "fs/edit", "shell/run",
        "agent/send", "agent/done", "agent/spawn",
    }
    assert reg.toolset(["tiny", "fs/*", "web/fetch"]) == {
        "fs/read", "fs/write", "fs/append", "fs/list", "fs/edit", "agent/send", "agent/done", "web/fetch",
    }
    assert reg.toolset("fs/read, shell/run") == {"fs/read", "shell/run"}
    with pytest.raises(ToolError, match="did you mean 'fs/read'"):
        reg.toolset(["fs/raed"])


def test_redact_hides_declared_and_secret_looking_keys() -> None:
    reg = ToolRegistry()
    reg.tool("web/call", secret_args=["pin"])(lambda url, pin, headers, max_tokens: None)
    args = {
        "url": "http://x",
        "pin": "1234",
        "API_KEY": "k",
        "headers": {"Authorization": "Bearer t", "accept": "json", "X-Auth-Token": "z"},
        "max_tokens": 5,
        "db_password": "pw",
        "clientSecret": "s",
    }
    out = reg.redact("web/call", args)
    assert out == {
        "url": "http://x",
        "pin": "***",
        "API_KEY": "***",
        "headers": {"Authorization": "***", "accept": "json", "X-Auth-Token": "***"},
        "max_tokens": 5,
        "db_password": "***",
        "clientSecret": "***",
    }
    assert args["pin"] == "1234"  # the caller's dict is untouched
    assert reg.redact("not/registered", {"token": "t"}) == {"token": "***"}


@pytest.mark.anyio
async def test_agent_tools_outside_a_runtime_refuse_and_the_context_carries_no_runtime(tmp_path: Path) -> None:
    reg = default_registry()
    ctx = make_ctx(tmp_path)
    assert "agents" in ToolContext.__dataclass_fields__ and "extra" not in ToolContext.__dataclass_fields__
    for name, args in (("agent/done", {"result": "x"}), ("agent/send", {"to": "parent", "body": 1}),
                       ("agent/spawn", {"id": "c", "instructions": "hi"})):
        with pytest.raises(ToolError, match="only inside a runtime"):
            await reg.invoke(name, args, ctx)
