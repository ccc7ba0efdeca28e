"""The generative judge's prompt templates (`*.txt` beside this file) and how they are rendered.

A template is a `str.format` string; the placeholders each one may use are in `FIELDS` and the
ones it must use in `REQUIRED`. Values substituted in (prompts, responses) are never parsed as
templates, so braces in user text are safe; a literal brace in a template is written `{{`.
A conversation is a list of message texts, alternating user and assistant and starting with the
user; it is rendered through the tokenizer's chat template where it has one, else in the plain
format of `PLAIN_TEMPLATE` (messages joined by a blank line), always ending where the judge's
next turn begins.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Sequence

PROMPT_DIR = Path(__file__).resolve().parent
FIELDS: dict[str, frozenset[str]] = {
    "task": frozenset({"prompt", "response"}),
    "verdict": frozenset({"yes", "no"}),
    "rating": frozenset(),
    "principle_verdict": frozenset({"principle", "yes", "no"}),
    "principle_rating": frozenset({"principle"}),
    "critique": frozenset(),
    "critique_principles": frozenset({"principles"}),
    "compare": frozenset({"prompt", "response_first", "response_second", "first", "second"}),
    "revision": frozenset({"prompt", "response", "critique"}),
    "solve": frozenset({"prompt"}),
    "solved_verdict": frozenset({"response", "yes", "no"}),
}
REQUIRED: dict[str, frozenset[str]] = {
    "task": frozenset({"prompt", "response"}),
    "principle_verdict": frozenset({"principle"}),
    "principle_rating": frozenset({"principle"}),
    "critique_principles": frozenset({"principles"}),
    "compare": frozenset({"response_first", "response_second"}),
    "revision": frozenset({"response", "critique"}),
    "solve": frozenset({"prompt"}),
    "solved_verdict": frozenset({"response"}),
}
TEMPLATE_MODES = ("auto", "chat", "plain")
PROMPT_SETS = ("compact",)  # folders of templates beside these, chosen by name (`prompt_set`)


def _placeholders(text: str, where: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as err:
        raise ValueError(f"{where}: not a valid format string: {err}") from err


def check_template(name: str, text: str, where: str) -> str:
    """Return `text` if its placeholders are allowed for template `name`; else ValueError naming them."""
    found = _placeholders(text, where)
    unknown = sorted(found - FIELDS[name])
    if unknown:
        raise ValueError(f"{where}: unknown placeholder {{{unknown[0]}}}; allowed: {sorted(FIELDS[name])}")
    missing = sorted(REQUIRED.get(name, frozenset()) - found)
    if missing:
        raise ValueError(f"{where}: missing placeholder {{{missing[0]}}}")
    return text


def prompt_set(directory: str | os.PathLike) -> Path:
    """The folder of a prompt set: a path, or the name of a set packaged beside these templates
    (`compact`: the fewest tokens around the task text, for small task models that never saw
    instructions); FileNotFoundError for neither, rather than silently using the defaults."""
    path = Path(directory)
    if path.is_dir():
        return path
    packaged = PROMPT_DIR / str(directory)
    if str(directory) in PROMPT_SETS and packaged.is_dir():
        return packaged
    raise FileNotFoundError(f"prompt_dir={str(directory)!r}: not a folder, nor a packaged prompt set "
                            f"({', '.join(PROMPT_SETS)})")


def load_templates(directory: str | os.PathLike | None = None) -> dict[str, str]:
    """Every template by name: from `directory` (a folder or a packaged set's name, `prompt_set`)
    where it holds `<name>.txt`, else the built-in file.

    The trailing newline a text editor adds is dropped; everything else is kept as written.
    """
    templates = {}
    directory = prompt_set(directory) if directory else None
    for name in FIELDS:
        path = Path(directory) / f"{name}.txt" if directory else None
        if path is None or not path.is_file():
            path = PROMPT_DIR / f"{name}.txt"
        templates[name] = check_template(name, path.read_text(encoding="utf-8").rstrip(), str(path))
    return templates


def save_templates(templates: dict[str, str], directory: str | os.PathLike) -> None:
    """Write every template to `directory/<name>.txt` (a checkpoint keeps the prompts it was used with)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in templates.items():
        (directory / f"{name}.txt").write_text(text + "\n", encoding="utf-8")


def uses_chat(tokenizer, mode: str = "auto") -> bool:
    """Whether `mode` renders through the chat template ("auto": where the tokenizer has one)."""
    if mode not in TEMPLATE_MODES:
        raise ValueError(f"template={mode!r}: expected one of {TEMPLATE_MODES}")
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if mode == "chat" and not has_chat:
        raise ValueError("template='chat' but the tokenizer has no chat template")
    return has_chat if mode == "auto" else mode == "chat"


def render(tokenizer, messages: Sequence[str], chat: bool) -> str:
    """The text of a conversation up to the start of the judge's (assistant's) next turn.

    Args:
        messages: texts alternating user, assistant, user, ...; odd length (the user speaks last).
        chat: through the tokenizer's chat template (with its generation prompt), else plain.
    """
    if len(messages) % 2 == 0:
        raise ValueError(f"{len(messages)} messages: a judge conversation ends with a user message")
    if not chat:
        return "\n\n".join(messages) + "\n\n"
    roles = ("user", "assistant")
    turns = [{"role": roles[i % 2], "content": text} for i, text in enumerate(messages)]
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


__all__ = ["FIELDS", "PROMPT_DIR", "REQUIRED", "check_template", "load_templates", "prompt_set", "render",
           "save_templates", "uses_chat"]
