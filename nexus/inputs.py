"""Checks on what `score`, `compare` and `calibrate` are given, with errors that name the index."""

from __future__ import annotations

from typing import Any, Sequence

from nexus.conversation import check_conversation, is_conversation, plain_text


def _check_sequence(name: str, value: Any) -> None:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence (list or tuple) of strings, got {type(value).__name__}")


def _check_encodable(name: str, text: str) -> None:
    """Raise ValueError if `text` holds a lone surrogate (U+D800-U+DFFF), which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{name} has a lone surrogate {text[err.start]!r} at character {err.start}: "
                         "not valid Unicode text") from None


def _check_text_or_conversation(name: str, value: Any) -> None:
    if isinstance(value, str):
        _check_encodable(name, value)
        return
    for j, message in enumerate(check_conversation(value, name)):
        _check_encodable(f"{name}[{j}]", message["content"])


def validate_inputs(prompts: Sequence, responses: Sequence, accepts_steps: bool = False) -> None:
    """Raise ValueError naming the offending index for bad `score`/`compare` input. A prompt is a
    string or a conversation (a list of {"role", "content"} messages, `nexus.conversation`); a
    response a string, the assistant's messages, or (`accepts_steps`) a list of step strings."""
    _check_sequence("prompts", prompts)
    _check_sequence("responses", responses)
    if len(prompts) == 0:
        raise ValueError("prompts is empty: score needs at least one (prompt, response)")
    if len(prompts) != len(responses):
        raise ValueError(f"length mismatch: {len(prompts)} prompts but {len(responses)} responses")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) and not is_conversation(prompt):
            raise ValueError(f"prompts[{i}] is {type(prompt).__name__}, expected str or a list of "
                             "{'role', 'content'} messages")
        _check_text_or_conversation(f"prompts[{i}]", prompt)
    for i, response in enumerate(responses):
        if isinstance(response, str) or is_conversation(response):
            _check_text_or_conversation(f"responses[{i}]", response)
            continue
        if accepts_steps and isinstance(response, Sequence):
            bad = [j for j, step in enumerate(response) if not isinstance(step, str)]
            if not bad:
                for j, step in enumerate(response):
                    _check_encodable(f"responses[{i}][{j}]", step)
                continue
            raise ValueError(f"responses[{i}][{bad[0]}] is {type(response[bad[0]]).__name__}, expected str")
        expected = "str or a sequence of step strings" if accepts_steps else "str or a list of messages"
        raise ValueError(f"responses[{i}] is {type(response).__name__}, expected {expected}")


def total_length(response: Any) -> int:
    """Characters of a string, a conversation's contents, or all steps."""
    if isinstance(response, str):
        return len(response)
    if is_conversation(response):
        return len(plain_text(response))
    return sum(len(s) for s in response)
