"""The arithmetic benchmark's difficulty ladder, prompt wordings, disjoint splits, and the
log-likelihood features that read the response given the prompt."""

import dataclasses
import random

import pytest
import torch

from nexus.backbones import load_backbone
from nexus.tasks.arithmetic import problems as arithmetic
from nexus.tasks.arithmetic.templates import (PARTITIONS, SEEN_TEMPLATES, TEMPLATES, UNSEEN_TEMPLATES, partition,
                                              problem_key, template_of)


@pytest.mark.parametrize("level", arithmetic.LEVELS)
@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_wording_parses_back_to_its_problem(level, template):
    cfg = dataclasses.replace(arithmetic.SPLITS[level], operators="+-*", templates=(template,))
    rng = random.Random(3)
    for _ in range(50):
        problem = arithmetic.sample_problem(rng, cfg)
        assert arithmetic.parse_prompt(problem.prompt) == (problem.operands, problem.operators)
        assert template_of(problem.prompt) == template == problem.template
        # the grader reads the wording: the true solution is right, an injected error is not
        assert arithmetic.gold_reward(problem.prompt, "\n".join(problem.steps)) == 1.0
        wrong, _ = arithmetic.inject_error(problem, rng, cfg)
        assert arithmetic.gold_reward(problem.prompt, "\n".join(wrong)) == 0.0
    assert set(SEEN_TEMPLATES).isdisjoint(UNSEEN_TEMPLATES)


def test_a_prompt_in_no_wording_is_refused_by_name():
    with pytest.raises(ValueError, match="unexpected character 'T'"):
        arithmetic.parse_prompt("Tell me 2 + 3.")
    with pytest.raises(ValueError, match=r"templates\[1\]='poem'"):
        arithmetic.ArithmeticConfig(templates=("bare", "poem"))


def test_one_wording_keeps_the_original_random_stream():
    # Data of the bare task drawn before wordings existed must not change.
    pair = arithmetic.generate(3, 0)["pairwise"][0]
    assert (pair.prompt, pair.chosen, pair.rejected) == ("7 - 1 - 5 - 9", "7 - 1 = 6\n6 - 5 = 1\n1 - 9 = -8",
                                                         "7 - 1 = 6\n6 - 5 = 1\n1 - 9 = -9")


def test_the_grader_accepts_equivalent_step_formats_and_nothing_else():
    prompt = "Compute (23 + 17) * 4 - 9."
    assert arithmetic.label_steps(prompt, ["Step 1: 17+23=40", "4 * 40 = 160", "160 - 9 = 151"]) == [1, 1, 1]
    # subtraction does not commute; a commuted step with the wrong result is wrong
    assert arithmetic.label_steps(prompt, ["23 + 17 = 40", "40 * 4 = 160", "9 - 160 = 151"]) == [1, 1, 0]
    assert arithmetic.label_steps(prompt, ["17 + 23 = 41", "41 * 4 = 164", "164 - 9 = 155"]) == [0, 0, 0]
    # a negative running value may come second in a commuted step
    assert arithmetic.label_steps("2 - 7 + 3", ["2 - 7 = -5", "3 + -5 = -2"]) == [1, 1]


@pytest.mark.parametrize("level", ["level2", "level3"])
def test_carry_errors_keep_the_last_digit(level):
    cfg = arithmetic.SPLITS[level]
    pairs = arithmetic.generate(200, 5, cfg)["pairwise"]
    for pair in pairs:
        k = pair.extra["error_step"]
        right = arithmetic.parse_steps(pair.chosen)[k].rsplit("=", 1)[1]
        wrong = arithmetic.parse_steps(pair.rejected)[k].rsplit("=", 1)[1]
        offset = int(wrong) - int(right)
        assert offset != 0 and offset % 10 == 0 and abs(offset) <= 10 * cfg.error_offset_max


def test_partitions_split_problems_disjointly_whatever_the_wording():
    keys = {}
    for name in PARTITIONS:
        cfg = dataclasses.replace(arithmetic.SPLITS["level1"], templates=SEEN_TEMPLATES + UNSEEN_TEMPLATES,
                                  partition=name)
        drawn = arithmetic.generate(400, 11, cfg)["pairwise"]
        keys[name] = {problem_key(*arithmetic.parse_prompt(p.prompt)) for p in drawn}
        assert all(partition(*arithmetic.parse_prompt(p.prompt)) == name for p in drawn)
    assert keys["lm"].isdisjoint(keys["rm"]) and keys["lm"].isdisjoint(keys["eval"])
    assert keys["rm"].isdisjoint(keys["eval"])
    # without a partition the draw covers all three in about their shares (60/20/20)
    rng = random.Random(0)
    drawn = [arithmetic.sample_problem(rng, arithmetic.SPLITS["level2"]) for _ in range(3000)]
    share = sum(partition(p.operands, p.operators) == "lm" for p in drawn) / len(drawn)
    assert 0.55 < share < 0.65


def test_the_ladder_lm_trains_only_on_its_partition_and_seen_wordings():
    from nexus.tasks.arithmetic.task_lm import LADDER, training_solutions

    small = dataclasses.replace(LADDER, n_examples=900)
    data = training_solutions(small)
    assert len(data) == 900
    assert {template_of(prompt) for prompt, _ in data} == set(SEEN_TEMPLATES)
    assert {partition(*arithmetic.parse_prompt(prompt)) for prompt, _ in data} == {"lm"}
    digits = {len(str(arithmetic.parse_prompt(prompt)[0][0])) for prompt, _ in data}
    assert digits == {1, 2, 3}


def _response_logprobs_by_hand(bb, prompt, response):
    """Mean and min log p of the response's tokens (and eos) given the prompt, from the LM itself."""
    lm = bb.model
    head = bb.tokenizer(arithmetic_plain(prompt, ""), add_special_tokens=False)["input_ids"]
    ids = bb.token_ids([prompt], [response])[0]
    assert ids[:len(head)] == head
    logits = lm(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    logp = torch.stack([logits[t - 1, ids[t]] for t in range(len(head), len(ids))])
    return torch.stack([logp.mean(), logp.min()])


def arithmetic_plain(prompt, response):
    from nexus.backbones.text import PLAIN_TEMPLATE

    return PLAIN_TEMPLATE.format(prompt=prompt, response=response)


@torch.inference_mode()
def test_log_likelihood_features_read_the_response_given_the_prompt():
    bb = load_backbone("tiny-gpt2", lm_logprobs=True).eval()
    prompts = ["What is 2 + 3? Work it out step by step.", "4 - 1"]
    responses = ["2 + 3 = 5", "4 - 1 = 3"]
    features = bb(**bb.encode(prompts, responses))[:, -2:]
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        torch.testing.assert_close(features[row], _response_logprobs_by_hand(bb, prompt, response), atol=1e-5, rtol=0)
    whole = load_backbone("tiny-gpt2", lm_logprobs=True, logprob_scope="input").eval()
    assert not torch.allclose(whole(**whole.encode(prompts, responses))[:, -2:], features, atol=1e-3)
    # the packed layout (a shared prompt read once) gives the same features
    ids = bb.token_ids(prompts[:1] * 2, ["2 + 3 = 5", "2 + 3 = 6"])
    shared = next(i for i, (a, b) in enumerate(zip(*ids)) if a != b)
    packed = bb.packed_features([(ids[0][:shared], [ids[0][shared:], ids[1][shared:]])])
    plain = bb(**bb.encode(prompts[:1] * 2, ["2 + 3 = 5", "2 + 3 = 6"]))
    torch.testing.assert_close(packed, plain, atol=1e-4, rtol=0)


def test_a_checkpoint_saved_before_the_scope_existed_keeps_reading_every_token(tmp_path):
    from nexus.backbones.backbone import Backbone

    bb = load_backbone("tiny-gpt2", lm_logprobs=True)
    spec = bb.spec()
    assert spec["logprob_scope"] == "response"
    bb.save_architecture(tmp_path)
    del spec["logprob_scope"]
    assert Backbone.from_architecture(tmp_path, spec).logprob_scope == "input"
    with pytest.raises(ValueError, match="logprob_scope='prompt'"):
        load_backbone("tiny-gpt2", lm_logprobs=True, logprob_scope="prompt")


def test_the_ladder_report_pairs_runs_by_seed(tmp_path):
    import json as _json

    from experiments.ladder_report import report

    # Two variants over three seeds: b is a, less 0.1, plus seed noise shared by both (paired),
    # so the paired difference is exactly 0.1 with no spread while the unpaired means overlap.
    for seed, shared in enumerate([0.0, 0.2, -0.2]):
        rows = [{"family": "scalar", "loglik": "on", "eval_set": "level2/seen", "accuracy": 0.7 + shared},
                {"family": "outcome", "loglik": "off", "eval_set": "level2/seen", "accuracy": 0.6 + shared},
                {"family": "rules", "loglik": "n/a", "eval_set": "level2/seen", "accuracy": 0.5 + 0.1 * seed}]
        run = tmp_path / str(seed)
        run.mkdir()
        (run / "metrics.json").write_text(_json.dumps({"rows": [], "pairwise": rows}))
    text = report(tmp_path)
    result = _json.loads((tmp_path / "ladder.json").read_text())
    diff = next(d for d in result["differences"] if {d["a"], d["b"]} == {"scalar (ll on)", "outcome (ll off)"})
    assert abs(abs(diff["difference"]) - 0.1) < 1e-9 and diff["differs"]
    vs_rules = next(d for d in result["differences"] if {d["a"], d["b"]} == {"scalar (ll on)", "rules"})
    assert not vs_rules["differs"]  # 0.2, 0.3, -0.2: the interval spans 0
    assert "scalar (ll on)" in text and (tmp_path / "ladder.png").stat().st_size > 0


def test_the_ladder_report_merges_families_of_another_sweep_paired_by_seed(tmp_path):
    import json as _json

    from experiments.ladder_report import report

    # The other sweep lists its runs in another order; config.yaml says which seed each is.
    for sweep, family, base, order in (("a", "scalar", 0.7, [0, 1, 2]), ("b", "generative", 0.6, [2, 0, 1])):
        for position, seed in enumerate(order):
            run = tmp_path / sweep / str(position)
            run.mkdir(parents=True)
            (run / "config.yaml").write_text(f"seed: {seed}\ndata: {{n_train: 800}}\n")
            rows = [{"family": family, "loglik": "n/a", "eval_set": "level2/seen",
                     "accuracy": base + [0.0, 0.2, -0.2][seed]}]
            (run / "metrics.json").write_text(_json.dumps({"rows": [], "pairwise": rows}))
    (tmp_path / "c").mkdir()  # the same family again, in another configuration
    for seed in range(3):
        (tmp_path / "c" / str(seed)).mkdir()
        (tmp_path / "c" / str(seed) / "config.yaml").write_text(f"seed: {seed}\ndata: {{n_train: 800}}\n")
        rows = [{"family": "scalar", "loglik": "n/a", "eval_set": "level2/seen", "accuracy": 0.5}]
        (tmp_path / "c" / str(seed) / "metrics.json").write_text(_json.dumps({"rows": [], "pairwise": rows}))
    report(tmp_path / "a", merge=[tmp_path / "b", tmp_path / "c"])
    result = _json.loads((tmp_path / "a" / "ladder.json").read_text())
    assert {r["variant"]: r["accuracy"] for r in result["summary"]} == pytest.approx(
        {"scalar": 0.7, "generative": 0.6, "scalar (c)": 0.5})
    diff = next(d for d in result["differences"] if {d["a"], d["b"]} == {"scalar", "generative"})
    assert abs(abs(diff["difference"]) - 0.1) < 1e-9 and diff["differs"]  # paired by seed, not by position
    (tmp_path / "b" / "0" / "config.yaml").write_text("seed: 7\ndata: {n_train: 800}\n")
    with pytest.raises(ValueError, match="are not those"):
        report(tmp_path / "a", merge=[tmp_path / "b"])


def test_the_ladder_data_of_a_run_keeps_lm_rm_and_evaluation_problems_apart():
    from omegaconf import OmegaConf

    from experiments.common import CONF, load_data
    from nexus.tasks.arithmetic.task_lm import LADDER, training_solutions

    ladder = OmegaConf.load(CONF / "data" / "ladder.yaml")
    del ladder["defaults"]
    data = OmegaConf.merge(OmegaConf.load(CONF / "data" / "arithmetic.yaml"), ladder,
                           {"n_train": 300, "n_eval": 60, "n_calibration": 60})
    run = load_data(data)
    key = lambda pairs: {problem_key(*arithmetic.parse_prompt(p.prompt)) for p in pairs}  # noqa: E731
    rm = key(run.train) | key(run.calibration)
    evaluation = set().union(*(key(pairs) for pairs in run.evals.values()))
    lm = {problem_key(*arithmetic.parse_prompt(p)) for p, _ in training_solutions(
        dataclasses.replace(LADDER, n_examples=3000))}
    assert rm and evaluation and lm
    assert rm.isdisjoint(evaluation) and lm.isdisjoint(rm) and lm.isdisjoint(evaluation)
    assert sorted(run.evals) == [f"{lv}/{g}" for lv in arithmetic.LEVELS for g in ("seen", "unseen")]
    assert {template_of(p.prompt) for p in run.evals["level2/unseen"]} == set(UNSEEN_TEMPLATES)
    assert {template_of(p.prompt) for p in run.train} == set(SEEN_TEMPLATES)


def test_the_shipped_ladder_lm_loads_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    import shutil

    from nexus.tasks.arithmetic import task_lm

    assert task_lm.SHIPPED_SHA256 is not None, "the ladder LM's weights ship with the repository"
    assert task_lm.ladder_lm_dir() == task_lm.SHIPPED_DIR
    bb = load_backbone("arith-lm-ladder", lm_logprobs=True)
    assert bb.hf_config.n_layer == task_lm.LADDER.n_layer and bb.hidden_size == task_lm.LADDER.n_embd
    copy = tmp_path / "arith_lm_ladder"
    shutil.copytree(task_lm.SHIPPED_DIR, copy)
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 1  # one bit of one weight
    (copy / "model.safetensors").write_bytes(bytes(weights))
    monkeypatch.setattr(task_lm, "SHIPPED_DIR", copy)
    with pytest.raises(ValueError, match="SHA-256 .* is not the shipped"):
        task_lm.ladder_lm_dir()
