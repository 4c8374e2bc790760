"""Handler introspection: how a task function takes its payload and context, and what it returns."""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

#: Messages and errors are limited in bytes by the server.
MESSAGE_BYTES_MAX = 4096
ERROR_BYTES_MAX = 16384


def split_utf8(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text] if text else []
    pieces, start = [], 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # a continuation byte: back off
            end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    return pieces


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (with a marker when cut)."""
    if len(text.encode("utf-8")) <= limit:
        return text
    return split_utf8(text, limit - 16)[0] + " …[truncated]"


@dataclass
class Handler:
    """A registered task function."""

    kind: str
    func: Callable[..., Any]
    is_async: bool
    arity: int
    payload_type: Any
    validate: Optional[Callable[[Any], Any]] = None

    @classmethod
    def inspect(cls, kind: str, func: Callable[..., Any]) -> "Handler":
        sig = inspect.signature(func)
        params = [
            p
            for p in sig.parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) > 2:
            raise TypeError(f"a task handler takes (payload) or (payload, ctx), not {len(params)} parameters: {func!r}")
        payload_type: Any = None
        if params:
            try:
                hints = typing.get_type_hints(func)
            except Exception:  # unresolvable forward references: take the payload as it is
                hints = {}
            payload_type = hints.get(params[0].name)
        is_async = inspect.iscoroutinefunction(func) or (
            not inspect.isroutine(func) and inspect.iscoroutinefunction(getattr(type(func), "__call__", None))
        )
        return cls(kind, func, is_async, len(params), payload_type, _validator(payload_type))

    def parse(self, payload: Any) -> Any:
        """The payload as the handler's first parameter wants it (raises ``ValidationError``)."""
        return payload if self.validate is None else self.validate(payload)

    def args(self, payload: Any, ctx: Any) -> tuple[Any, ...]:
        return (payload, ctx)[: self.arity]


def _validator(t: Any) -> Optional[Callable[[Any], Any]]:
    """The validator of a payload annotation, or ``None`` when the payload is passed as it is."""
    if t is None or t is Any or t is inspect.Parameter.empty:
        return None
    if isinstance(t, type) and issubclass(t, BaseModel):
        return t.model_validate
    return TypeAdapter(t).validate_python


def dump_result(result: Any) -> Any:
    """A handler's return value as JSON (pydantic models, dataclasses, dates... are converted)."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return to_jsonable_python(result)


def describe_error(exc: BaseException) -> str:
    """The error a failed attempt is reported with: the exception's type and message."""
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return truncate_utf8(text, ERROR_BYTES_MAX)
