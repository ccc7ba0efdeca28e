"""JSONL readers and writers for the three reward-model data formats.

One JSON object per line:

- pairwise: ``{"prompt", "chosen", "rejected", "margin"?}``; prompt and responses are strings or
  conversations (lists of ``{"role", "content"}`` messages, TRL's conversational format)
- outcome: ``{"prompt", "response", "label"}``, label 0/1 or a probability
- process: ``{"prompt", "steps": [...], "labels": [...]}``, one label per step, 0/1 or a
  probability (soft Monte-Carlo labels, Wang et al. 2023 "Math-Shepherd")

Unknown fields are kept in ``extra`` and written back, so a read-write round trip loses nothing.
Every error names the file, the 1-based physical line and the field that is wrong.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import sys
import tempfile
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, Union

import numpy as np

from nexus.conversation import check_conversation


# A prompt or response: a string, or a conversation stored as a tuple of {"role", "content"} dicts.
Text = Union[str, tuple]


class DataFormatError(ValueError):
    """Bad data; the message names the file, line and field (``file:line: field 'x': ...``)."""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but `true` as a label is ambiguous data, not a number.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    return repr(value) if _is_number(value) else _type_name(value)


def _check_str(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DataFormatError(f"{where}: expected a string, got {_type_name(value)}")
    return value


def _check_text(where: str, value: Any):
    """A string, or a conversation (a list of {"role", "content"} messages, TRL's conversational
    format) as a tuple of message dicts with text content."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        try:
            return check_conversation(value, where)
        except ValueError as err:
            raise DataFormatError(str(err)) from None
    raise DataFormatError(f"{where}: expected a string or a list of {{'role', 'content'}} messages, "
                          f"got {_type_name(value)}")


def _check_probability(where: str, value: Any) -> float:
    # Written as a range test that NaN fails, since json.loads would otherwise let NaN through.
    if not _is_number(value) or not 0 <= value <= 1:
        raise DataFormatError(f"{where}: expected a number in [0, 1], got {_describe(value)}")
    return float(value)


def _check_sequence(where: str, value: Any) -> tuple:
    # A str is iterable too; accepting it would silently turn "abc" into three steps.
    if not isinstance(value, (list, tuple)):
        raise DataFormatError(f"{where}: expected a list, got {_type_name(value)}")
    return tuple(value)


def _check_extra(record: Any) -> None:
    extra = record.extra
    if not isinstance(extra, dict):
        raise DataFormatError(f"field 'extra': expected a dict, got {_type_name(extra)}")
    known = {f.name for f in fields(record)} - {"extra"}
    for key in extra:
        if not isinstance(key, str):
            raise DataFormatError(f"field 'extra': keys must be strings, got {_type_name(key)}")
        if key in known:
            # to_dict flattens extra into the object; a clash would overwrite the real field.
            raise DataFormatError(f"field 'extra': key {key!r} clashes with a format field")


@dataclass(frozen=True)
class PairwiseExample:
    """A preference pair: ``chosen`` is preferred to ``rejected`` as an answer to ``prompt``.

    Attributes:
        margin: optional preference strength (the margin of Touvron et al. 2023, Llama 2,
            eq. 2); any finite number, ``None`` when absent.
        extra: unknown JSON fields, written back by ``write_jsonl``.
    """

    prompt: Text
    chosen: Text
    rejected: Text
    margin: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected"):
            object.__setattr__(self, name, _check_text(f"field {name!r}", getattr(self, name)))
        if self.margin is not None:
            if not _is_number(self.margin) or not math.isfinite(self.margin):
                raise DataFormatError(
                    f"field 'margin': expected a finite number, got {_describe(self.margin)}"
                )
            object.__setattr__(self, "margin", float(self.margin))
        _check_extra(self)


@dataclass(frozen=True)
class OutcomeExample:
    """A whole response scored once: ``label`` is 0/1 correctness or a probability in [0, 1]."""

    prompt: Text
    response: Text
    label: float
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", _check_text("field 'prompt'", self.prompt))
        object.__setattr__(self, "response", _check_text("field 'response'", self.response))
        object.__setattr__(self, "label", _check_probability("field 'label'", self.label))
        _check_extra(self)


@dataclass(frozen=True)
class ProcessExample:
    """A response split into steps, one label in [0, 1] per step (stored as tuples)."""

    prompt: Text
    steps: tuple[str, ...]
    labels: tuple[float, ...]
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", _check_text("field 'prompt'", self.prompt))
        steps = _check_sequence("field 'steps'", self.steps)
        if not steps:
            raise DataFormatError("field 'steps': expected at least one step, got none")
        for i, step in enumerate(steps):
            _check_str(f"field 'steps' index {i}", step)
        labels = _check_sequence("field 'labels'", self.labels)
        if len(labels) != len(steps):
            raise DataFormatError(
                f"field 'labels': expected {len(steps)} labels (one per step), got {len(labels)}"
            )
        labels = tuple(_check_probability(f"field 'labels' index {i}", x) for i, x in enumerate(labels))
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "labels", labels)
        _check_extra(self)


Record = Union[PairwiseExample, OutcomeExample, ProcessExample]
KINDS: dict[str, type] = {
    "pairwise": PairwiseExample,
    "outcome": OutcomeExample,
    "process": ProcessExample,
}


def to_dict(record: Record) -> dict[str, Any]:
    """The JSON object for ``record``: its fields (tuples as lists), then its ``extra`` fields.

    An absent margin (``None``) is left out rather than written as ``null``.
    """
    if not isinstance(record, tuple(KINDS.values())):
        raise TypeError(f"expected one of {sorted(c.__name__ for c in KINDS.values())}, "
                        f"got {type(record).__name__}")
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name == "extra" or (f.name == "margin" and value is None):
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    out.update(record.extra)
    return out


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of repeated keys; that would silently drop the first value.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DataFormatError(f"field {key!r}: appears more than once in the object")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise DataFormatError(f"malformed JSON: {name} is not valid JSON")


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): the only way a lone surrogate gets into a
# parsed string, since UTF-8 bytes cannot encode one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _lone_surrogate(obj: dict[str, Any]) -> tuple[str, str, int] | None:
    """(field, path inside it, character index) of the first string holding a lone surrogate, or None.

    Walks the parsed object without recursion (its depth is bounded only by the JSON parser).
    Keys are checked too; a surrogate pair written as two escapes is decoded by JSON into one
    valid character and is fine.
    """
    stack: list[tuple[str, str, Any]] = [(key, "", value) for key, value in reversed(obj.items())]
    for key in obj:
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError as e:
                return key, " (its name)", e.start
    while stack:
        field, path, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                return field, path, e.start
        elif isinstance(value, list):
            stack.extend((field, f"{path} index {i}", v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, dict):
            for k in value:
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError as e:
                    return field, f"{path} key {k!r}", e.start
            stack.extend((field, f"{path} key {k!r}", v) for k, v in reversed(list(value.items())))
    return None


def _parse_line(where: str, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{where}: not valid UTF-8 at byte {e.start + 1}") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{where}: malformed JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise DataFormatError(f"{where}: malformed JSON: nesting too deep (arrays or objects nested more "
                              f"than about {sys.getrecursionlimit()} levels)") from None
    except DataFormatError as e:
        raise DataFormatError(f"{where}: {e}") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {_type_name(obj)}")
    if _SURROGATE_ESCAPE.search(raw):
        found = _lone_surrogate(obj)
        if found is not None:
            field, path, index = found
            raise DataFormatError(f"{where}: field {field!r}{path}: lone surrogate at character {index} (a \\uD800-"
                                  "\\uDFFF escape without its pair): not valid Unicode text")
    return obj


def _iter_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", object)`` for every non-blank line, lines counted from 1."""
    with open(path, "rb") as f:
        # Bytes split on b"\n" only, so U+2028 inside a JSON string cannot shift line numbers.
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark is an editor artefact, not data
            if raw.strip():  # blank lines carry no record; skipping them loses nothing
                yield f"{path}:{lineno}", _parse_line(f"{path}:{lineno}", raw)


def _from_dict(cls: type, obj: dict[str, Any], where: str) -> Record:
    names = [f.name for f in fields(cls) if f.name != "extra"]
    required = [f.name for f in fields(cls)
                if f.name != "extra" and f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in obj]
    if missing:
        label = "field" if len(missing) == 1 else "fields"
        raise DataFormatError(f"{where}: missing {label} {', '.join(map(repr, missing))}")
    known = {name: obj[name] for name in names if name in obj}
    extra = {key: value for key, value in obj.items() if key not in known}
    try:
        return cls(**known, extra=extra)
    except DataFormatError as e:
        raise DataFormatError(f"{where}: {e}") from None


def read_jsonl(path: str | os.PathLike, kind: str) -> list[Record]:
    """Read and validate a JSONL file of ``kind`` ("pairwise", "outcome" or "process").

    Raises:
        ValueError: ``kind`` is unknown.
        DataFormatError: a line is malformed or invalid, or the file holds no records.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    path = Path(path)
    records = [_from_dict(KINDS[kind], obj, where) for where, obj in _iter_objects(path)]
    if not records:
        raise DataFormatError(f"{path}: no records (the file is empty or has only blank lines)")
    return records


def read_pairwise(path: str | os.PathLike) -> list[PairwiseExample]:
    """Read a pairwise JSONL file; see ``read_jsonl``."""
    return read_jsonl(path, "pairwise")


def read_outcome(path: str | os.PathLike) -> list[OutcomeExample]:
    """Read an outcome JSONL file; see ``read_jsonl``."""
    return read_jsonl(path, "outcome")


def read_process(path: str | os.PathLike) -> list[ProcessExample]:
    """Read a process JSONL file; see ``read_jsonl``."""
    return read_jsonl(path, "process")


def _dump(index: int, record: Record) -> str:
    try:
        # allow_nan=False: NaN is not JSON, and readers elsewhere would choke on it.
        return json.dumps(to_dict(record), ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"record {index}: cannot be written as JSON: {e}") from None


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp makes the file 0600; keep an existing file's mode, else the usual 0644.
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never a part
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Atomically write records of one kind as JSONL (UTF-8), creating parent folders.

    Returns:
        The number of records written.

    Raises:
        ValueError: there are no records (an empty file would not read back).
        TypeError: a record is not a format dataclass, or the kinds are mixed.
        DataFormatError: a record's ``extra`` cannot be written as JSON.
    """
    path = Path(path)
    records = list(records)
    if not records:
        raise ValueError(f"{path}: no records to write; an empty file would not read back")
    first = type(records[0])
    for i, record in enumerate(records):
        if type(record) is not first:
            raise TypeError(f"{path}: record {i} is a {type(record).__name__}, "
                            f"but record 0 is a {first.__name__}; one kind per file")
    _atomic_write_text(path, "".join(_dump(i, r) for i, r in enumerate(records)))
    return len(records)


def process_to_outcome(ex: ProcessExample, step_delimiter: str = "\n") -> OutcomeExample:
    """Collapse a process example into an outcome example.

    The response is the steps joined by ``step_delimiter`` and the label is ``min(labels)``:
    with 0/1 labels that is 1 exactly when every step is correct; with soft labels it is the
    minimum-over-steps solution score of Wang et al. 2023 ("Math-Shepherd"), a conservative
    alternative to the product of Lightman et al. 2023. ``extra`` is copied.
    """
    return OutcomeExample(
        prompt=ex.prompt,
        response=step_delimiter.join(ex.steps),
        label=min(ex.labels),
        extra=dict(ex.extra),
    )


def flip_preferences(pairs: Sequence[PairwiseExample], rate: float, seed: int = 0) -> list[PairwiseExample]:
    """Swap chosen and rejected in a random `rate` fraction of pairs (symmetric label noise).

    Exactly round(rate * len(pairs)) pairs are flipped, chosen by `seed`; a flipped pair
    records ``extra["label_flipped"] = True`` so studies can tell which labels were noisy.
    A margin is kept: it states the strength of the (now flipped) preference.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"label noise rate={rate!r} must be within [0, 1]")
    pairs = list(pairs)
    flipped = set(np.random.default_rng(seed).permutation(len(pairs))[: round(rate * len(pairs))].tolist())
    return [PairwiseExample(p.prompt, p.rejected, p.chosen, p.margin, {**p.extra, "label_flipped": True})
            if i in flipped else p for i, p in enumerate(pairs)]
