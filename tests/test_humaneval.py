"""HumanEval workload pieces: pass@k, chat-reply code extraction, cached execution, and the
humaneval_bon study end to end on a few tasks (slow: it samples from the packaged SmolLM2)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import torch
import pytest

from nexus.data import humaneval


def test_pass_at_k_matches_enumerating_every_subset():
    for n, c in [(5, 0), (5, 2), (6, 3), (4, 4)]:
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            brute = np.mean([max(s) for s in subsets])
            assert humaneval.pass_at_k(n, c, k) == pytest.approx(brute)
    with pytest.raises(ValueError, match="k=0"):
        humaneval.pass_at_k(3, 1, 0)


def test_extract_code_takes_the_first_fenced_block():
    reply = "Sure!\n```python\ndef f(x):\n    return x + 1\n```\nand more ```python\nbad\n```"
    assert humaneval.extract_code(reply) == "\ndef f(x):\n    return x + 1\n"
    assert humaneval.extract_code("```python\ndef g():\n    return 2") == "\ndef g():\n    return 2\n"  # unclosed
    assert humaneval.extract_code("def h(): pass") == "\ndef h(): pass\n"


def test_chat_style_completion_replaces_the_stub_and_is_cached(tmp_path):
    problem = humaneval.load_problems()[0]  # has_close_elements
    good = "\n" + problem.prompt.split("def ")[0] + "def " + problem.prompt.split("def ", 1)[1] + \
        problem.canonical_solution
    wrong = "\ndef has_close_elements(numbers, threshold):\n    return False\n"
    results = humaneval.execute_cached([problem, problem], [good, wrong], cache_dir=tmp_path)
    assert [r["passed"] for r in results] == [True, False]
    (cached,) = list(tmp_path.glob("*.json"))
    cached.write_text(json.dumps([{"passed": False, "status": "x", "error": ""}] * 2))  # the cache is read back
    assert [r["status"] for r in humaneval.execute_cached([problem, problem], [good, wrong], cache_dir=tmp_path)] \
        == ["x", "x"]


@pytest.mark.slow
def test_humaneval_bon_study_runs_end_to_end(tmp_path):
    from experiments.humaneval_bon import run
    from tests.conftest import compose_config

    cfg = compose_config(tmp_path, "run", [
        "experiment=humaneval_bon", "+debug=humaneval_bon"])  # 2 + 2 tasks, N = 4
    out = run(cfg, tmp_path)
    rows = {r["method"]: r for r in out["rows"]}
    # best-of-1 is a random pick whatever the scores; the oracle at n = N is "any sample passes".
    assert rows["orm"]["n1"] == pytest.approx(rows["random"]["n1"]) == pytest.approx(out["policy_pass_at_1"])
    assert rows["oracle (pass@n)"]["n4"] == pytest.approx(out["tasks_with_any_pass"] / 2)
    assert all(rows["oracle (pass@n)"][f"n{n}"] >= rows["orm"][f"n{n}"] for n in (1, 2, 4))
    assert (tmp_path / "best_of_n.png").is_file() and (tmp_path / "models" / "orm" / "config.json").is_file()


def test_stop_strings_match_only_generated_text():
    from nexus.backbones import load_backbone
    from nexus.sampling.policy import StopOnText

    tok = load_backbone("tiny-gpt2").tokenizer
    prompt = tok("assistant\n", add_special_tokens=False).input_ids
    rows = [prompt + tok(t, add_special_tokens=False).input_ids for t in ("```python\nx = 1\n```", "```python\nx")]
    ids = torch.tensor(rows[0:1] + [rows[1] + [tok.pad_token_id] * (len(rows[0]) - len(rows[1]))])
    stop = StopOnText(tok, ["\n```"], start=len(prompt))
    # the prompt's "\n" followed by the reply's opening fence is not a stop; the closing fence is
    assert stop(ids, None).tolist() == [True, False]
    assert StopOnText(tok, ["\n```"], start=0)(ids[1:], None).tolist() == [True]
