"""Training and evaluation data from `datasets`: a hub id, a local dataset folder, or data files
(parquet, jsonl/json, csv), in TRL's dataset formats or nexus's own.

| format (TRL's name) | columns | nexus examples |
|---|---|---|
| preference, explicit prompt | prompt, chosen, rejected | `PairwiseExample` |
| preference, implicit prompt | chosen, rejected (each the whole text or conversation) | `PairwiseExample`, prompt split off |
| unpaired preference | prompt, completion, label (bool or 0/1) | `OutcomeExample` |
| stepwise supervision | prompt, completions (steps), labels (one per step) | `ProcessExample` |
| nexus outcome / process | prompt, response, label / prompt, steps, labels | the same |

Each of prompt, chosen, rejected and completion may be a string ("standard") or a list of
`{"role", "content"}` messages ("conversational"); conversations keep their roles and are rendered
by the backbone's chat template when scored or trained on. An implicit prompt is split off as TRL
does: the messages the two conversations share, or the longest common start of the two strings
(moved back by one character where it ends right after a space, which stays with the responses).
A bad row raises `DataFormatError` naming the dataset, split, row and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from nexus.conversation import is_conversation
from nexus.data.formats import DataFormatError, OutcomeExample, PairwiseExample, ProcessExample

FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
# The columns that say which format a dataset is in, most specific first.
LAYOUTS = (
    ("process", ("prompt", "completions", "labels")),
    ("process", ("prompt", "steps", "labels")),
    ("outcome", ("prompt", "completion", "label")),
    ("outcome", ("prompt", "response", "label")),
    ("pairwise", ("chosen", "rejected")),
)


def split_implicit_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen, rejected) from two whole texts or conversations that share their start."""
    if is_conversation(chosen) and is_conversation(rejected):
        shared = 0
        while shared < min(len(chosen), len(rejected)) and dict(chosen[shared]) == dict(rejected[shared]):
            shared += 1
        return list(chosen[:shared]), list(chosen[shared:]), list(rejected[shared:])
    if isinstance(chosen, str) and isinstance(rejected, str):
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        if 0 < shared < min(len(chosen), len(rejected)) and chosen[shared - 1] == " ":
            shared -= 1
        return chosen[:shared], chosen[shared:], rejected[shared:]
    raise DataFormatError("fields 'chosen' and 'rejected': an implicit prompt needs two strings or two conversations")


def _label(value: Any) -> Any:
    """TRL's boolean labels as 1.0 / 0.0; numbers are left to the example's own checks."""
    return float(value) if isinstance(value, bool) else value


def to_example(row: Mapping[str, Any], kind: str) -> Any:
    """One row as a nexus example of format `kind` (pairwise, outcome or process)."""
    extra = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected", "completion", "response",
                                                        "label", "completions", "steps", "labels", "margin")}
    if kind == "pairwise":
        prompt, chosen, rejected = row.get("prompt"), row["chosen"], row["rejected"]
        if prompt is None:
            prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
        return PairwiseExample(prompt, chosen, rejected, row.get("margin"), extra=_plain(extra))
    if kind == "outcome":
        response = row["completion"] if "completion" in row else row["response"]
        return OutcomeExample(row["prompt"], response, _label(row["label"]), extra=_plain(extra))
    steps = row["completions"] if "completions" in row else row["steps"]
    labels = [_label(y) for y in row["labels"]]
    return ProcessExample(row["prompt"], tuple(steps), tuple(labels), extra=_plain(extra))


def _plain(extra: dict) -> dict:
    """Extra columns kept JSON-friendly (datasets gives numpy scalars and the like)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in extra.items()}


def detect_format(columns: Iterable[str]) -> str:
    """pairwise, outcome or process, from a dataset's column names."""
    names = set(columns)
    for kind, needed in LAYOUTS:
        if set(needed) <= names:
            return kind
    raise DataFormatError(f"columns {sorted(names)}: not a known format; expected one of "
                          + "; ".join(", ".join(c) for _, c in LAYOUTS) + " (map yours with `columns`)")


def examples_from_rows(rows: Iterable[Mapping[str, Any]], kind: str | None, where: str,
                       columns: Mapping[str, str] | None = None, limit: int | None = None) -> list:
    """Rows (a `datasets.Dataset`, an iterable dataset, or dicts) as nexus examples of `kind` (None:
    detected from the first row's columns), after renaming columns by `columns` (source -> nexus
    name). Errors name `where`, the row and the field."""
    rename = dict(columns or {})
    out, detected = [], kind
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            break
        row = {rename.get(k, k): v for k, v in dict(row).items()}
        if detected is None or i == 0:
            found = detect_format(row)
            if detected is not None and found != detected:
                raise DataFormatError(f"{where}: columns {sorted(row)} are {found} data, but {detected} data is needed "
                                      "(this model trains on that format)")
            detected = found
        try:
            out.append(to_example(row, detected))
        except (DataFormatError, KeyError, TypeError, ValueError) as err:
            field = f"field {err.args[0]!r}: missing" if isinstance(err, KeyError) else str(err)
            raise DataFormatError(f"{where} row {i}: {field}") from None
    if not out:
        raise DataFormatError(f"{where}: no rows")
    return out


def load_hf(path: str, *, split: str = "train", subset: str | None = None, kind: str | None = None,
            columns: Mapping[str, str] | None = None, revision: str | None = None, streaming: bool = False,
            limit: int | None = None) -> list:
    """`datasets.load_dataset` of a hub id, a local dataset folder, or a data file (or glob) with a
    .parquet, .jsonl, .json or .csv name, then `examples_from_rows`. `streaming` reads rows as
    they come (with `limit`, only the first `limit`), for sets too large to download whole."""
    try:
        import datasets
    except ImportError:
        raise ImportError("data from `datasets` needs it installed: pip install -e .[data]") from None
    suffix = "".join(Path(path).suffixes[-1:]).lower()
    if suffix in FILE_BUILDERS:
        dataset = datasets.load_dataset(FILE_BUILDERS[suffix], data_files={split: path}, split=split,
                                        streaming=streaming)
    else:
        dataset = datasets.load_dataset(path, subset, split=split, revision=revision, streaming=streaming)
    where = f"dataset {path}" + (f" ({subset})" if subset else "") + f" [{split}]"
    return examples_from_rows(dataset, kind, where, columns, limit)
