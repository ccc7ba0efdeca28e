"""Tests for nexus.data.formats (JSONL formats) and nexus.tasks.arithmetic (the built-in task)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nexus.tasks.arithmetic import problems as ar
from nexus.data.formats import (
    DataFormatError,
    OutcomeExample,
    PairwiseExample,
    ProcessExample,
    process_to_outcome,
    read_jsonl,
    read_outcome,
    read_pairwise,
    read_process,
    to_dict,
    write_jsonl,
)

REPO = Path(__file__).resolve().parents[1]
UNICODE = "Größe × 2 — 日本語 🙂 line\u2028sep"


# ---------------------------------------------------------------- formats: round trips


@pytest.mark.parametrize(
    "records, reader",
    [
        ([PairwiseExample(UNICODE, "ja ✓", "", margin=1.5, extra={"source": "ü", "id": 7}),
          PairwiseExample("p", "a", "b")], read_pairwise),
        ([OutcomeExample(UNICODE, "réponse", 0.25, extra={"meta": {"k": [1, 2]}}),
          OutcomeExample("p", "", 1)], read_outcome),
        ([ProcessExample(UNICODE, ["ステップ 1", ""], [1, 0.5], extra={"n": None})], read_process),
    ],
)
def test_round_trip_keeps_unicode_and_extra(tmp_path, records, reader):
    path = tmp_path / "sub" / "data.jsonl"
    assert write_jsonl(path, records) == len(records)
    back = reader(path)
    assert back == records
    # U+2028 inside a string must not split a record across lines.
    assert len(path.read_text(encoding="utf-8").split("\n")) == len(records) + 1
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_extra_fields_written_back_and_margin_omitted_when_absent(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": "p", "chosen": "c", "rejected": "r", "score": 3}\n')
    [ex] = read_pairwise(path)
    assert ex.extra == {"score": 3} and ex.margin is None
    assert to_dict(ex) == {"prompt": "p", "chosen": "c", "rejected": "r", "score": 3}


def test_blank_lines_skipped_and_line_numbers_stay_physical(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text('\n{"prompt": "p", "response": "r", "label": 1}\n  \n\n'
                    '{"prompt": "p", "response": "r", "label": 2}\n')
    with pytest.raises(DataFormatError, match=r"gaps\.jsonl:5: field 'label'"):
        read_outcome(path)


def test_process_to_outcome_uses_min_label():
    ex = ProcessExample("q", ["a", "b", "c"], [1, 0.75, 0.5], extra={"id": 1})
    out = process_to_outcome(ex, step_delimiter=" | ")
    assert out == OutcomeExample("q", "a | b | c", 0.5, extra={"id": 1})


def test_read_jsonl_dispatch_and_unknown_kind(tmp_path):
    path = tmp_path / "o.jsonl"
    write_jsonl(path, [OutcomeExample("p", "r", 0)])
    assert read_jsonl(path, "outcome") == [OutcomeExample("p", "r", 0.0)]
    with pytest.raises(ValueError, match="outcome, pairwise, process"):
        read_jsonl(path, "preference")


def test_writer_refuses_mixed_kinds_and_empty(tmp_path):
    with pytest.raises(TypeError, match="record 1"):
        write_jsonl(tmp_path / "m.jsonl", [OutcomeExample("p", "r", 0), PairwiseExample("p", "a", "b")])
    with pytest.raises(ValueError, match="no records"):
        write_jsonl(tmp_path / "e.jsonl", [])
    with pytest.raises(DataFormatError, match="record 0"):
        write_jsonl(tmp_path / "n.jsonl", [OutcomeExample("p", "r", 0, extra={"x": float("nan")})])
    assert not list(tmp_path.iterdir())  # nothing half-written


# ---------------------------------------------------------------- formats: bad input

GOOD_PAIR = '{"prompt": "p", "chosen": "c", "rejected": "r"}'
GOOD_PROC = '{"prompt": "p", "steps": ["a", "b"], "labels": [1, 0]}'

BAD_CASES = [
    # (kind, bad line, expected line number, pattern that must appear)
    ("pairwise", '{"prompt": "p", "chosen": "c" "rejected": "r"}', 3,
     r"malformed JSON: Expecting ',' delimiter \(column 31\)"),
    ("pairwise", '{"prompt": "p", "rejected": "r"}', 3, r"missing field 'chosen'"),
    ("pairwise", '{"prompt": 5, "chosen": "c", "rejected": "r"}', 3,
     r"field 'prompt': expected a string or a list of \{'role', 'content'\} messages, got int"),
    ("pairwise", '{"prompt": "p", "chosen": "c", "rejected": "r", "margin": "big"}', 3,
     r"field 'margin': expected a finite number, got str"),
    ("pairwise", '{"prompt": "p", "chosen": "c", "rejected": "r", "margin": NaN}', 3,
     r"malformed JSON: NaN"),
    ("pairwise", '{"prompt": "p", "chosen": "c", "chosen": "d", "rejected": "r"}', 3,
     r"field 'chosen': appears more than once"),
    ("pairwise", '["p", "c", "r"]', 3, r"expected a JSON object, got list"),
    ("outcome", '{"prompt": "p", "response": "r", "label": 1.5}', 3,
     r"field 'label': expected a number in \[0, 1\], got 1\.5"),
    ("outcome", '{"prompt": "p", "response": "r", "label": true}', 3,
     r"field 'label': expected a number in \[0, 1\], got bool"),
    ("outcome", '{"prompt": "p", "response": null, "label": 1}', 3,
     r"field 'response': expected a string or a list of \{'role', 'content'\} messages, got null"),
    ("process", '{"prompt": "p", "steps": ["a", "b", "c", "d"], "labels": [1, 1, 0]}', 3,
     r"field 'labels': expected 4 labels \(one per step\), got 3"),
    ("process", '{"prompt": "p", "steps": ["a", "b", 3], "labels": [1, 1, 0]}', 3,
     r"field 'steps' index 2: expected a string, got int"),
    ("process", '{"prompt": "p", "steps": ["a", "b"], "labels": [1, -0.5]}', 3,
     r"field 'labels' index 1: expected a number in \[0, 1\], got -0\.5"),
    ("process", '{"prompt": "p", "steps": [], "labels": []}', 3, r"field 'steps': expected at least one"),
    ("process", '{"prompt": "p", "steps": "ab", "labels": [1, 1]}', 3,
     r"field 'steps': expected a list, got str"),
]


@pytest.mark.parametrize("kind, bad, lineno, pattern", BAD_CASES)
def test_bad_input_names_file_line_and_field(tmp_path, kind, bad, lineno, pattern):
    good = GOOD_PROC if kind == "process" else GOOD_PAIR
    good = good if kind != "outcome" else '{"prompt": "p", "response": "r", "label": 0}'
    path = tmp_path / "train.jsonl"
    # line 1 good, line 2 blank, line 3 bad, line 4 good: the error must point at line 3
    path.write_text(f"{good}\n\n{bad}\n{good}\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_jsonl(path, kind)
    message = str(info.value)
    assert message.startswith(f"{path}:{lineno}: "), message
    assert re.search(pattern, message), message


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(GOOD_PAIR.encode() + b'\n{"prompt": "\xff"}\n')
    with pytest.raises(DataFormatError, match=r"bytes\.jsonl:2: not valid UTF-8"):
        read_pairwise(path)


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_file_without_records_is_an_error(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=r"empty\.jsonl: no records"):
        read_process(path)


def test_constructors_validate_and_extra_cannot_shadow_fields():
    with pytest.raises(DataFormatError, match="field 'margin'"):
        PairwiseExample("p", "a", "b", margin=float("inf"))
    with pytest.raises(DataFormatError, match="key 'label' clashes"):
        OutcomeExample("p", "r", 1, extra={"label": 0})


# ---------------------------------------------------------------- arithmetic: rendering, grading


def test_hand_written_example():
    p = ar.make_problem([2, 3, 4, 5], ["+", "*", "-"])
    assert p.prompt == "(2 + 3) * 4 - 5"
    assert p.steps == ("2 + 3 = 5", "5 * 4 = 20", "20 - 5 = 15") and p.answer == 15
    assert ar.parse_prompt(p.prompt) == ((2, 3, 4, 5), ("+", "*", "-"))
    assert ar.label_steps(p.prompt, list(p.steps)) == [1, 1, 1]
    assert ar.label_steps(p.prompt, ["2 + 3 = 5", "5 * 4 = 21", "21 - 5 = 16"]) == [1, 0, 0]
    assert ar.gold_reward(p.prompt, "2 + 3 = 5\n5 * 4 = 20\n20 - 5 = 15\n") == 1.0


@pytest.mark.parametrize("operands, operators, prompt", [
    ([23, 17, 4, 9], "+*-", "(23 + 17) * 4 - 9"),
    ([2, 3, 4, 5], "*+*", "(2 * 3 + 4) * 5"),
    ([2, 3, 4, 5], "+**", "(2 + 3) * 4 * 5"),
    ([9, 2, 3, 4], "--*", "(9 - 2 - 3) * 4"),
    ([2, 3, 4, 5, 6], "+*-*", "((2 + 3) * 4 - 5) * 6"),
    ([2, 3, 4], "*+", "2 * 3 + 4"),
])
def test_precedence_parentheses(operands, operators, prompt):
    assert ar.render_expression(operands, list(operators)) == prompt
    assert ar.parse_prompt(prompt) == (tuple(operands), tuple(operators))


def test_negative_intermediates():
    p = ar.make_problem([3, 7, 2], ["-", "+"])
    assert p.steps == ("3 - 7 = -4", "-4 + 2 = -2") and p.answer == -2
    assert ar.label_steps(p.prompt, list(p.steps)) == [1, 1]


def test_label_steps_edge_cases():
    prompt = "(2 + 3) * 4 - 5"
    assert ar.label_steps(prompt, ["2 + 3 = 5", "5 * 4 = 20"]) == [1, 0]  # stops early
    assert ar.label_steps(prompt, ["2 + 3 = 5", "5 * 4 = 20", "20 - 5 = 15", "15 + 0 = 15"]) == [1, 1, 1, 0]
    assert ar.label_steps(prompt, ["2+3=5", "", "20 - 5 = 15"]) == [1, 0, 0]  # blank is a wrong step
    assert ar.label_steps(prompt, ["2 + 3 = 5", "5 - 4 = 1", "1 - 5 = -4"]) == [1, 0, 0]  # wrong op
    assert ar.label_steps(prompt, ["4 + 3 = 7", "7 * 4 = 28", "28 - 5 = 23"]) == [0, 0, 0]  # wrong x
    assert ar.label_steps(prompt, ["3 + 2 = 5", "4 * 5 = 20", "20 - 5 = 15"]) == [1, 1, 1]  # + and * commute
    assert ar.label_steps(prompt, ["2 + 3 = 5", "5 * 4 = 20", "5 - 20 = 15"]) == [1, 1, 0]  # - does not
    assert ar.label_steps(prompt, ar.parse_steps("")) == []
    assert ar.parse_steps(" a \n\n b\r\n") == ["a", "", "b"]
    with pytest.raises(ValueError, match="canonical"):
        ar.parse_prompt("2 + 3 * 4")  # precedence would not evaluate left to right
    with pytest.raises(ValueError, match="column 3"):
        ar.parse_prompt("2 / 3")


@pytest.mark.parametrize("response, answer", [
    ("1 + 2 = 3", 3), ("x\n9 - 12 = -3\n", -3), ("answer: 5", None), ("7 = seven", None), ("", None),
])
def test_final_answer(response, answer):
    assert ar.final_answer(response) == answer


# ---------------------------------------------------------------- arithmetic: generation


def _result(step: str) -> int:
    return int(step.rsplit("=", 1)[1])


@pytest.mark.parametrize("split", ["id", "shifted", "shifted_ops"])
def test_generated_labels_are_ground_truth(split):
    cfg = ar.SPLITS[split]
    data = ar.generate(60, seed=3, cfg=cfg)
    assert [len(data[k]) for k in ("pairwise", "outcome", "process")] == [60, 120, 120]
    low, high = 10 ** (cfg.digits - 1), 10**cfg.digits - 1
    for ex in data["pairwise"]:
        operands, operators = ar.parse_prompt(ex.prompt)
        assert cfg.min_steps <= len(operators) <= cfg.max_steps
        assert all(low <= v <= high for v in operands) and set(operators) <= set(cfg.operators)
        good, bad, k = ex.chosen.split("\n"), ex.rejected.split("\n"), ex.extra["error_step"]
        assert ar.label_steps(ex.prompt, good) == [1] * len(good)
        assert ar.gold_reward(ex.prompt, ex.chosen) == 1.0
        assert ar.label_steps(ex.prompt, bad) == [1] * k + [0] * (len(bad) - k)
        assert ar.gold_reward(ex.prompt, ex.rejected) == 0.0
        assert 1 <= abs(_result(bad[k]) - _result(good[k])) <= 3
    for ex in data["process"]:
        assert list(ex.labels) == ar.label_steps(ex.prompt, list(ex.steps))
        assert process_to_outcome(ex).label == ar.gold_reward(ex.prompt, "\n".join(ex.steps))
    labels = [ex.label for ex in data["outcome"]]
    assert sum(labels) == 60 and labels != [1.0, 0.0] * 60  # balanced and shuffled
    assert [(o.prompt, o.response) for o in data["outcome"]] == \
        [(p.prompt, "\n".join(p.steps)) for p in data["process"]]


def test_steps_and_digits_knobs_and_operand_range():
    cfg = ar.ArithmeticConfig(digits=3, min_steps=6, max_steps=6, operators="*")
    problems = [ar.sample_problem(random.Random(i), cfg) for i in range(20)]
    assert all(len(p.steps) == 6 and len(p.operands) == 7 for p in problems)
    assert all(100 <= v <= 999 for p in problems for v in p.operands)
    # one-digit operands cover 1..9 and never 0, so an injected error always reaches the answer
    rng = random.Random(0)
    seen = {v for _ in range(200) for v in ar.sample_problem(rng, ar.SPLITS["id"]).operands}
    assert seen == set(range(1, 10))


def test_determinism_by_seed():
    assert ar.generate(25, seed=7) == ar.generate(25, seed=7)
    a, b = ar.generate(25, seed=7), ar.generate(25, seed=8)
    assert [e.prompt for e in a["pairwise"]] != [e.prompt for e in b["pairwise"]]
    sols = ar.correct_solutions(25, 7)
    assert sols == [(e.prompt, e.chosen) for e in a["pairwise"]]
    with pytest.raises(ValueError, match="seed"):
        ar.generate(3, seed=-7)  # Random(-7) == Random(7): would silently repeat seed 7


def test_inject_error_at_step_and_offsets():
    cfg = ar.ArithmeticConfig(error_offset_min=5, error_offset_max=5)
    p = ar.make_problem([2, 3, 4, 5], ["+", "*", "-"])
    steps, k = ar.inject_error(p, random.Random(1), cfg, at_step=1)
    assert k == 1 and steps[0] == "2 + 3 = 5"
    assert steps[1] in ("5 * 4 = 25", "5 * 4 = 15")
    assert steps[2] == f"{_result(steps[1])} - 5 = {_result(steps[1]) - 5}"  # carried correctly
    with pytest.raises(ValueError, match="at_step"):
        ar.inject_error(p, random.Random(1), cfg, at_step=3)


@pytest.mark.parametrize("kwargs, field", [
    ({"digits": 0}, "digits"), ({"min_steps": 4, "max_steps": 3}, "max_steps"),
    ({"operators": "+/"}, "operators"), ({"operators": "++"}, "operators"),
    ({"error_offset_min": 0}, "error_offset_min"), ({"max_steps": True}, "max_steps"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ar.ArithmeticConfig(**kwargs)


def test_cli_writes_three_readable_files(tmp_path):
    out = tmp_path / "arith"
    cmd = [sys.executable, "-m", "nexus.tasks.arithmetic", "--out", str(out), "--n", "12",
           "--seed", "5", "--split", "shifted", "--max-steps", "6", "--operators", "+-*"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for kind, count in [("pairwise", 12), ("outcome", 24), ("process", 24)]:
        assert f"{out / (kind + '.jsonl')}\t{count} {kind}" in run.stdout
    pairs = read_pairwise(out / "pairwise.jsonl")
    cfg = ar.ArithmeticConfig(digits=2, min_steps=4, max_steps=6, operators="+-*")
    assert pairs == ar.generate(12, 5, cfg)["pairwise"]
    assert len(read_outcome(out / "outcome.jsonl")) == 24
    assert all(len(ex.steps) >= 4 for ex in read_process(out / "process.jsonl"))
    first = json.loads((out / "pairwise.jsonl").read_text().split("\n")[0])
    assert set(first) == {"prompt", "chosen", "rejected", "problem_id", "error_step"}


def test_cli_rejects_inconsistent_knobs(tmp_path, capsys):
    # in-process: a second subprocess would only re-pay the interpreter start-up
    with pytest.raises(SystemExit) as info:
        ar.main(["--out", str(tmp_path), "--n", "3", "--split", "shifted", "--min-steps", "9"])
    assert info.value.code == 2 and "max_steps (5) < min_steps (9)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_flip_preferences_swaps_an_exact_seeded_fraction():
    from nexus.data.formats import flip_preferences

    pairs = [PairwiseExample(f"p{i}", f"good{i}", f"bad{i}") for i in range(200)]
    noisy = flip_preferences(pairs, 0.25, seed=3)
    flipped = [i for i, ex in enumerate(noisy) if ex.extra.get("label_flipped")]
    assert len(flipped) == 50 and flipped == [i for i, ex in enumerate(noisy) if ex.chosen.startswith("bad")]
    assert flip_preferences(pairs, 0.25, seed=3) == noisy and flip_preferences(pairs, 0.25, seed=4) != noisy
    assert flip_preferences(pairs, 0.0) == pairs
    with pytest.raises(ValueError, match="rate=1.5"):
        flip_preferences(pairs, 1.5)
