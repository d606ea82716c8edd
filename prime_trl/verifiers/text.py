"""The text of a TRL completion: a string, or a conversational list of messages."""

from __future__ import annotations


def _content_text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal-style parts: [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def completion_text(completion, row: int | None = None) -> str:
    """`"..."` or `[{"role": "assistant", "content": "..."}, ...]` -> the assistant's text."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
        messages = [m for m in completion if m.get("role", "assistant") == "assistant"] or completion
        return "\n".join(_content_text(m.get("content")) for m in messages)
    where = f"row {row}: " if row is not None else ""
    raise ValueError(f"{where}completion must be a string or a list of messages, got {type(completion).__name__}")
