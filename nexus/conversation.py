"""Conversations as inputs: a prompt or a response may be a list of chat messages
`{"role": ..., "content": ...}` (TRL's conversational format) as well as a string.

A backbone renders (prompt, response) as one conversation, the prompt's messages then the
response's (a string prompt is one "user" message, a string response one "assistant" message),
through its tokenizer's chat template: once, with every role kept. A model without a chat
template, and families that read text rather than tokens (rules, the judge's prompts), get the
messages' contents joined by blank lines (`plain_text`), which for one user and one assistant
message is exactly the plain (prompt, response) format.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

ROLES = ("system", "user", "assistant", "tool")


def is_conversation(value: Any) -> bool:
    """Whether `value` is a non-empty list (or tuple) of mappings with "role" and "content"."""
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value))


def content_text(content: Any, where: str) -> str:
    """A message's content as text: itself, or the text parts of a multimodal list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and all(isinstance(p, Mapping) for p in content):
        return "".join(p["text"] for p in content if p.get("type") == "text" and isinstance(p.get("text"), str))
    raise ValueError(f"{where}: message content is {type(content).__name__}, expected str or a list of parts")


def check_conversation(value: Any, where: str) -> tuple[dict, ...]:
    """The messages as a tuple of {"role", "content"} dicts with text content; ValueError naming
    `where[j]` and the field for anything else."""
    if not is_conversation(value):
        raise ValueError(f"{where}: expected a list of {{'role', 'content'}} messages")
    out = []
    for j, message in enumerate(value):
        role = message["role"]
        if not isinstance(role, str) or not role:
            raise ValueError(f"{where}[{j}]: field 'role' is {type(role).__name__}, expected a non-empty string")
        out.append({"role": role, "content": content_text(message["content"], f"{where}[{j}]")})
    return tuple(out)


def messages(prompt: Any, response: Any) -> list[dict]:
    """The whole conversation: the prompt's messages (a string: one user message), then the
    response's (a string: one assistant message)."""
    head = list(prompt) if is_conversation(prompt) else [{"role": "user", "content": prompt}]
    tail = list(response) if is_conversation(response) else [{"role": "assistant", "content": response}]
    return [{"role": m["role"], "content": content_text(m["content"], "message")} for m in head + tail]


def plain_text(value: Any) -> str:
    """A string as it is; a conversation's contents joined by blank lines (roles dropped)."""
    if isinstance(value, str):
        return value
    return "\n\n".join(content_text(m["content"], "message") for m in value)


def key(value: Any):
    """A hashable stand-in for a prompt or response (string, conversation, or steps)."""
    if isinstance(value, str):
        return value
    if is_conversation(value):
        return tuple((m["role"], content_text(m["content"], "message")) for m in value)
    return tuple(value)


def as_plain(value: Any) -> Any:
    """A conversation as plain text; anything else (a string, a list of steps) as it is."""
    return plain_text(value) if is_conversation(value) else value
