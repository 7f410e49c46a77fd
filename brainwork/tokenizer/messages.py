"""Validation of chat messages in the OpenAI shape, with errors that name the bad field."""

from __future__ import annotations

from typing import Any

_ROLES = ("system", "developer", "user", "assistant", "tool")


def flatten_messages(messages: Any) -> list[dict[str, Any]]:
    """Check `messages` and return copies whose `content` is a plain string.

    Content may be a string or a list of parts (`{"type": "text", "text": ...}`), which are
    joined with newlines, as vLLM does for text-only models.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: expected a non-empty list of {'role': ..., 'content': ...} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}]: expected an object with 'role' and 'content', got {type(m).__name__}")
        role = m.get("role")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role: expected one of {', '.join(_ROLES)}, got {role!r}")
        content = m.get("content")
        if content is None and role == "assistant" and m.get("tool_calls"):
            content = ""
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError(
                        f"messages[{i}].content[{j}]: expected {{'type': 'text', 'text': str}} "
                        "(only text parts are supported)"
                    )
                texts.append(part["text"])
            content = "\n".join(texts)
        if not isinstance(content, str):
            raise ValueError(
                f"messages[{i}].content: expected a string or a list of text parts, got {type(content).__name__}"
            )
        out.append({**m, "content": content})
    return out
