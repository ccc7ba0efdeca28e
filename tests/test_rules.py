"""Rule functions on hand-checked inputs, the rules and hybrid RMs, and the TRL reward adapter."""

from __future__ import annotations

import json
import math

import pytest
import torch

import nexus
from nexus.tasks.arithmetic import correct_solutions, generate, gold_reward
from nexus.models.hybrid import HybridRewardModel
from nexus.models.rules import RulesRewardModel
from nexus.normalize import FixedStandardize
from nexus.rule_functions import RULES, lcs_length, tokenize
from tests.conftest import compose_train


def rule(name: str, response: str, reference: str | None = None, prompt: str = "", **params) -> float:
    return RULES[name].fn(prompt, response, reference, **params)


# ---------------------------------------------------------------- every rule function, by hand

@pytest.mark.parametrize("response, expected", [
    ("w " * 7, 1.0),            # 7 words, inside [5, 10]
    ("w " * 2, 2 / 5),          # 3 below: 1 - 3 / low
    ("w " * 13, 1 - 3 / 10),    # 3 above: 1 - 3 / high
    ("w " * 25, 0.0),           # beyond 2 * high
    ("", 0.0),                  # 0 words: 1 - 5 / 5
])
def test_length_words(response, expected):
    assert rule("length", response, low=5, high=10) == pytest.approx(expected)


def test_length_chars_and_tolerance():
    assert rule("length", "abcdef", low=1, high=4, unit="chars") == pytest.approx(1 - 2 / 4)
    assert rule("length", "w " * 11, low=5, high=10, tolerance=2) == pytest.approx(0.5)
    assert rule("length", "w " * 13, low=5, high=10, tolerance=2) == 0.0


@pytest.mark.parametrize("response, expected", [
    ("the cat the cat", 2 / 4), ("The the THE", 1 / 3), ("a b c", 1.0), ("", 1.0), ("x, x. y!", 2 / 3),
])
def test_repetition_is_the_unique_word_ratio(response, expected):
    assert rule("repetition", response) == pytest.approx(expected)


def test_toxicity_penalises_listed_words(tmp_path):
    assert rule("toxicity", "a kind reply") == 0.0
    assert rule("toxicity", "you IDIOT!") == -0.5
    assert rule("toxicity", "idiot, idiot and moron") == -1.0  # 3 hits * 0.5, capped at -1
    assert rule("toxicity", "idiot moron", per_hit=0.25) == -0.5
    words = tmp_path / "words.txt"
    words.write_text("# my list\nBanana\n\napple  # fruit\n")
    assert rule("toxicity", "banana apple idiot", per_hit=0.1, words_file=str(words)) == pytest.approx(-0.2)


def test_format_default_is_the_arithmetic_solution_format():
    assert rule("format", "23 + 17 = 40\n40 * 4 = 160\n160 - 9 = 151\n") == 1.0
    assert rule("format", "40 - 50 = -10") == 1.0
    assert rule("format", "23 + 17 = 40\nso the answer is 40") == 0.0
    assert rule("format", "") == 0.0
    assert rule("format", "the answer: 12", pattern=r"\d+", mode="search") == 1.0
    assert rule("format", "the answer: 12", pattern=r"\d+") == 0.0


def test_math_correct_reads_the_arithmetic_final_answer():
    solution = "23 + 17 = 40\n40 * 4 = 160\n160 - 9 = 151"
    assert rule("math_correct", solution, "151") == 1.0
    assert rule("math_correct", solution, solution) == 1.0           # a reference solution works too
    assert rule("math_correct", solution, " -151 ") == 0.0
    assert rule("math_correct", "160 - 9 = 151\nthe end", "151") == 0.0  # the answer is on the last line
    assert rule("math_correct", "", "151") == 0.0
    with pytest.raises(ValueError, match="cannot read a final answer from reference 'no number'"):
        rule("math_correct", solution, "no number")


def test_math_correct_takes_an_answer_parser():
    boxed = r"Half of 3 is 1.5, so the answer is $\boxed{\frac{3}{2}}$ and not \boxed{2}... wait: \boxed{ \frac{3}{2} }"
    assert rule("math_correct", boxed, r"\frac{3}{2}", answer="boxed") == 1.0
    assert rule("math_correct", boxed, r"the result is \boxed{\frac{3}{2}}", answer="boxed") == 1.0
    assert rule("math_correct", boxed, "2", answer="boxed") == 0.0
    assert rule("math_correct", "no box here", "2", answer="boxed") == 0.0
    assert rule("math_correct", "so we get 1,250.0 in total", "1250", answer="last_number") == 1.0
    assert rule("math_correct", "23 + 17 = 40", "40.0") == 1.0  # numbers compare by value
    with pytest.raises(ValueError, match=r"answer='latex': expected one of \['boxed', 'last_equals', 'last_number'\]"):
        RulesRewardModel([{"name": "math_correct", "answer": "latex"}])


def test_math_correct_agrees_with_the_arithmetic_gold_reward():
    gold = dict(correct_solutions(30, seed=3))
    examples = generate(30, seed=3)["outcome"]
    values = [rule("math_correct", ex.response, gold[ex.prompt]) for ex in examples]
    assert values == [gold_reward(ex.prompt, ex.response) for ex in examples]
    assert 0 < sum(values) < len(values)  # both outcomes occur


def test_code_syntax():
    assert rule("code_syntax", "def f(x):\n    return x\n") == 1.0
    assert rule("code_syntax", "def f(:\n") == 0.0
    assert rule("code_syntax", "   \n") == 0.0  # no code is not valid code
    assert rule("code_syntax", "Here:\n```python\nx = 1\n```\nDone.") == 1.0
    assert rule("code_syntax", "```python\ndef (\n```") == 0.0
    assert rule("code_syntax", "```python\nx = 1\n```", fenced=False) == 0.0
    assert rule("code_syntax", "x = 1\0") == 0.0  # a null byte: ast.parse raises, the rule says 0


def test_code_tests_run_in_the_sandbox():
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
    assert rule("code_tests", "def add(a, b):\n    return a + b\n", tests) == 1.0
    assert rule("code_tests", "def add(a, b):\n    return a - b\n", tests) == 0.0
    # a program that needs a shell does not get one: the refused call fails it
    assert rule("code_tests", "import subprocess\nsubprocess.run(['true'])\ndef add(a, b):\n    return a + b\n",
                tests) == 0.0
    hack = "class T:\n    def __eq__(s, o): return True\ndef add(a, b):\n    return T()\n"
    assert rule("code_tests", hack, tests) == 0.0  # the tests compare with the expected value's type
    # HumanEval style: the prompt is the signature, the response the body.
    assert rule("code_tests", "    return a + b\n", tests, prompt="def add(a, b):\n", include_prompt=True) == 1.0


def test_tokenize_and_lcs():
    assert tokenize("Hello, world!") == ["Hello", ",", "world", "!"]
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4  # the textbook example (CLRS 15.4)
    assert lcs_length([], ["a"]) == 0


CAT_SAT, CAT_IS = "the cat sat on the mat", "the cat is on the mat"


def test_bleu_by_hand():
    # 1-grams 5/6 match, 2-grams 3/5 (the cat, on the, the mat), 3-grams 1/4 (on the mat), 4-grams 0/3;
    # equal lengths, so no brevity penalty.
    assert rule("bleu", CAT_SAT, CAT_IS, max_n=2, smooth=False) == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert rule("bleu", CAT_SAT, CAT_IS, smooth=False) == 0.0  # no 4-gram matches
    smoothed = (5 / 6 * (3 + 1) / (5 + 1) * (1 + 1) / (4 + 1) * (0 + 1) / (3 + 1)) ** (1 / 4)
    assert rule("bleu", CAT_SAT, CAT_IS) == pytest.approx(smoothed)  # = (1/18) ** (1/4)
    assert rule("bleu", CAT_SAT, CAT_SAT) == pytest.approx(1.0)
    # Brevity: c = 2 < r = 6, all n-grams match: BP = exp(1 - 6 / 2).
    assert rule("bleu", "the cat", CAT_SAT, max_n=2, smooth=False) == pytest.approx(math.exp(-2))
    # Clipping: "the" occurs once in the reference, so 1 of 3 unigrams counts.
    assert rule("bleu", "the the the", "the cat", max_n=1) == pytest.approx(1 / 3)
    assert rule("bleu", "", CAT_SAT) == 0.0


def test_rouge_l_by_hand():
    assert rule("rouge_l", CAT_SAT, CAT_IS) == pytest.approx(5 / 6)  # LCS "the cat on the mat"
    # LCS 2: P = 2/4, R = 2/2; F1 = 2PR / (P + R) = 2/3; beta 2: 5PR / (R + 4P) = 5/6.
    assert rule("rouge_l", "a b c d", "a c") == pytest.approx(2 / 3)
    assert rule("rouge_l", "a b c d", "a c", beta=2.0) == pytest.approx(5 / 6)
    assert rule("rouge_l", "", "a c") == 0.0 and rule("rouge_l", "x y", "a c") == 0.0


REFERENCES = {"math_correct": "3", "code_tests": "assert f() == 1\n", "bleu": "a b c", "rouge_l": "a b c"}


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_stays_in_its_documented_range(name):
    r = RULES[name]
    responses = ["", "1 + 2 = 3", "def f():\n    return 1\n", "idiot idiot idiot a b c a b c " * 30]
    for response in responses:
        value = r.fn("1 + 2", response, REFERENCES.get(name))
        assert isinstance(value, float) and r.low <= value <= r.high, (name, response, value)


# ---------------------------------------------------------------- the composite

def test_composite_is_the_weighted_sum():
    rm = RulesRewardModel([{"name": "length", "low": 1, "high": 3}, "repetition"], weights=[2, 0.5])
    out = rm.score(["p", "p", "p"], ["a a", "a b c d e", "x"])
    # length: 1, 1 - 2/3, 1; repetition: 1/2, 1, 1.
    expected = torch.tensor([2 * 1 + 0.5 * 0.5, 2 * (1 / 3) + 0.5, 2 + 0.5])
    torch.testing.assert_close(out.rewards, expected)
    torch.testing.assert_close(out.extras["repetition"], torch.tensor([0.5, 1.0, 1.0]))
    assert out.uncertainty is None and out.step_rewards is None


def test_references_shared_per_function_and_duplicate_names():
    rm = RulesRewardModel(["math_correct", "bleu", {"name": "format", "pattern": "x"}, "format"])
    assert rm.labels == ["math_correct", "bleu", "format[2]", "format[3]"]
    out = rm.score(["1 + 2"] * 3, ["1 + 2 = 3", "1 + 2 = 4", "x"],
                   references=[3, "1 + 2 = 3", {"math_correct": "0", "bleu": "x"}])
    torch.testing.assert_close(out.extras["math_correct"], torch.tensor([1.0, 0.0, 0.0]))
    # BLEU by hand, smoothed 4-gram: "1 + 2 = 3" vs "3": p = 1/5, 1/5, 1/4, 1/3 (c > r: no BP);
    # "1 + 2 = 4" vs "1 + 2 = 3": p = 4/5, 4/5, 3/4, 2/3; "x" vs "x": 1.
    bleu = [(1 / 5 * 1 / 5 * 1 / 4 * 1 / 3) ** 0.25, (4 / 5 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25, 1.0]
    torch.testing.assert_close(out.extras["bleu"], torch.tensor(bleu))
    torch.testing.assert_close(out.extras["format[2]"], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(out.extras["format[3]"], torch.tensor([1.0, 1.0, 0.0]))


KNOWN = "bleu, code_syntax, code_tests, format, length, math_correct, repetition, rouge_l, toxicity"


@pytest.mark.parametrize("kwargs, message", [
    ({"functions": ["length", "nope"]}, f"functions\\[1\\]: unknown rule function 'nope'; known: {KNOWN}"),
    ({"functions": [{"low": 1}]}, "functions\\[0\\]: unknown rule function None"),
    ({"functions": [{"name": "length", "lo": 1}]},
     "functions\\[0\\] \\(length\\): unknown parameter 'lo'; accepted: high, low, tolerance, unit"),
    ({"functions": [{"name": "repetition", "x": 1}]}, "unknown parameter 'x'; accepted: none"),
    ({"functions": [{"name": "length", "low": 9, "high": 3}]}, "functions\\[0\\] \\(length\\): need 0 <= low <= high"),
    ({"functions": [{"name": "format", "pattern": "("}]},
     "functions\\[0\\] \\(format\\): pattern '\\(' is not a valid"),
    ({"functions": [{"name": "bleu", "max_n": 0}]}, "max_n must be an integer >= 1"),
    ({"functions": [{"name": "toxicity", "per_hit": -1}]}, "per_hit must be a number > 0"),
    ({"functions": []}, "functions must be a non-empty list"),
    ({"functions": "length"}, "functions must be a non-empty list"),
    ({"functions": ["length", "repetition"], "weights": [1.0]},
     "weights has 1 entries but functions has 2: give one weight per function"),
    ({"functions": ["length", "repetition"], "weights": [1.0, 0.0]},
     "weights\\[1\\] = 0.0: every weight must be .* > 0"),
    ({"functions": ["length", "repetition"], "weights": [-2.0, 1.0]}, "weights\\[0\\] = -2.0"),
    ({"functions": ["length"], "weights": [float("nan")]}, "weights\\[0\\] = nan"),
    ({"functions": ["length"], "weights": [True]}, "weights\\[0\\] = True"),
])
def test_construction_fails_fast_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RulesRewardModel(**kwargs)


@pytest.mark.parametrize("functions, references, message", [
    (["math_correct", "bleu"], None, "references missing: functions math_correct, bleu read a reference"),
    (["math_correct"], ["1"], "references has 1 entries but there are 2 responses"),
    (["math_correct"], "12", "references must be a list with one entry per response, got str"),
    (["math_correct"], ["1", 2.5], "references\\[1\\] is float, expected str, int or a dict"),
    (["math_correct", "bleu"], ["1", {"bleu": "x"}], "references\\[1\\]\\['math_correct'\\] is missing"),
    (["math_correct"], ["1", {"math_correct": 3}], "references\\[1\\]\\['math_correct'\\] is int"),
    (["length"], ["1", "2"], "references given but none of the functions \\(length\\) reads one"),
    (["math_correct"], ["1", "no answer"], "input 1, function math_correct: cannot read a final answer"),
])
def test_score_reference_errors(functions, references, message):
    with pytest.raises(ValueError, match=message):
        RulesRewardModel(functions).score(["1 + 0", "2 + 0"], ["1 + 0 = 1", "2 + 0 = 2"], references=references)


def test_score_input_errors_name_the_index():
    with pytest.raises(ValueError, match="responses\\[1\\] is int"):
        RulesRewardModel().score(["a", "b"], ["x", 3])


def test_rules_save_load_round_trip(tmp_path):
    rm = RulesRewardModel([{"name": "length", "low": 2, "high": 4}, "bleu"], weights=[0.5, 3.0])
    rm.set_normalizer(FixedStandardize(mean=1.0, std=2.0))
    prompts, responses, refs = ["p"] * 3, ["a b c", "a", "a b c d e f g h"], ["a b c", "a b", "z"]
    path = rm.save_pretrained(tmp_path / "rules")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["functions"] == [{"name": "length", "low": 2, "high": 4}, {"name": "bleu"}]
    assert config["weights"] == [0.5, 3.0] and config["saved_state"]["normalizer"]["kind"] == "fixed"
    loaded = nexus.load(path)
    assert isinstance(loaded, RulesRewardModel) and loaded.device == torch.device("cpu")
    torch.testing.assert_close(loaded.score(prompts, responses, references=refs).rewards,
                               rm.score(prompts, responses, references=refs).rewards)
    raw = loaded.score(prompts, responses, references=refs, normalize=False).rewards
    torch.testing.assert_close((raw - 1.0) / (2.0 + 1e-8), loaded.score(prompts, responses, references=refs).rewards)


def test_rules_config_instantiates_like_every_model_config(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_train(tmp_path, ["model=rules", "backbone=tiny-gpt2"])
    rm = instantiate(cfg.model, backbone=instantiate(cfg.backbone))
    assert isinstance(rm, RulesRewardModel) and rm.labels == ["length", "repetition", "toxicity"]
    json.dumps(rm.config_dict())  # plain types, not OmegaConf containers
    torch.testing.assert_close(rm.score(["1 + 1", "2 - 1"], ["1 + 1 = 2", ""]).rewards, torch.tensor([1 + 2 / 3, 1.0]))


def test_rules_compare_is_bradley_terry_on_rule_rewards():
    rm = RulesRewardModel(["math_correct"])
    p = rm.compare(["1 + 1", "1 + 1"], ["1 + 1 = 2", "1 + 1 = 3"], ["1 + 1 = 3", "1 + 1 = 2"], references=["2", "2"])
    torch.testing.assert_close(p, torch.sigmoid(torch.tensor([1.0, -1.0])))


# ---------------------------------------------------------------- hybrid

HYBRID_RESPONSES = ["a a", "a b", "a a a b"]  # repetition 1/2, 1, 1/2


def standardize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std(unbiased=False)


def test_hybrid_mixes_standardised_parts(scalar_rm):
    prompts = ["q1", "q2", "q3"]
    hybrid = HybridRewardModel(RulesRewardModel(["repetition"]), scalar_rm, alpha=0.3)
    assert hybrid.beta == pytest.approx(0.7)
    out = hybrid.score(prompts, HYBRID_RESPONSES)
    rule_z = torch.tensor([-1 / math.sqrt(2), math.sqrt(2), -1 / math.sqrt(2)])  # by hand: mean 2/3, std 1/sqrt(18)
    torch.testing.assert_close(standardize(torch.tensor([0.5, 1.0, 0.5])), rule_z)
    model_z = standardize(scalar_rm.score(prompts, HYBRID_RESPONSES).rewards)
    torch.testing.assert_close(out.rewards, 0.3 * rule_z + 0.7 * model_z, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.extras["rule"], rule_z, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.extras["rule/repetition"], torch.tensor([0.5, 1.0, 0.5]))


def test_hybrid_fixed_normalizers_and_round_trip(tmp_path, scalar_rm):
    rules = RulesRewardModel(["math_correct", "repetition"])
    hybrid = HybridRewardModel(rules, scalar_rm, alpha=0.6, beta=0.4)
    prompts, responses, refs = ["1 + 1"] * 4, ["1 + 1 = 2", "1 + 1 = 3", "2", "1 + 1 = 2 2"], ["2"] * 4
    hybrid.fit_normalizers(prompts, responses, references=refs)
    rule_raw = rules.score(prompts, responses, references=refs).rewards.double()
    model_raw = scalar_rm.score(prompts, responses).rewards.double()
    one = hybrid.score(prompts[:1], responses[:1], references=refs[:1]).rewards  # a batch of one: fixed stats
    expected = (0.6 * (rule_raw[0] - rule_raw.mean()) / rule_raw.std(unbiased=False)
                + 0.4 * (model_raw[0] - model_raw.mean()) / model_raw.std(unbiased=False))
    assert float(one) == pytest.approx(float(expected), abs=1e-5)
    path = hybrid.save_pretrained(tmp_path / "hybrid")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model", "model.safetensors"]
    assert json.loads((path / "model" / "config.json").read_text())["model_type"] == "scalar"
    assert set(hybrid.state_dict()) == {"temperature", "rules.temperature"}  # inner weights stored once
    loaded = nexus.load(path)
    assert isinstance(loaded, HybridRewardModel) and loaded.rule_normalizer.kind == "fixed"
    torch.testing.assert_close(loaded.score(prompts, responses, references=refs).rewards,
                               hybrid.score(prompts, responses, references=refs).rewards, atol=1e-5, rtol=0)


def test_hybrid_compare_scores_both_sides_in_one_call(scalar_rm):
    hybrid = HybridRewardModel({"functions": ["repetition"]}, scalar_rm, alpha=0.5)
    prompts, a, b = ["q", "q"], ["a a", "a b"], ["a b c", "a a a b"]
    joint = hybrid.score(prompts * 2, a + b).rewards
    torch.testing.assert_close(hybrid.compare(prompts, a, b), torch.sigmoid(joint[:2] - joint[2:]))


@pytest.mark.parametrize("alpha, beta, message", [
    (0.5, 0.6, "alpha \\+ beta must be 1, got alpha=0.5 \\+ beta=0.6"),
    (-0.2, 1.2, "alpha = -0.2: must be a finite number >= 0"),
    (1.5, None, "beta = -0.5: must be a finite number >= 0"),
    ("0.5", None, "alpha = '0.5'"),
])
def test_hybrid_mix_validation(scalar_rm, alpha, beta, message):
    with pytest.raises(ValueError, match=message):
        HybridRewardModel(RulesRewardModel(), scalar_rm, alpha=alpha, beta=beta)


def test_hybrid_rejects_a_non_model(scalar_rm):
    with pytest.raises(ValueError, match="model must be a nexus RewardModel or a checkpoint path, got dict"):
        HybridRewardModel(RulesRewardModel(), {}, alpha=0.5)


# ---------------------------------------------------------------- the TRL adapter

def call_like_trl(func, prompts, completions, **columns):
    """What GRPOTrainer does: keyword arguments, plus completion_ids, trainer_state and dataset columns."""
    return func(prompts=prompts, completions=completions, completion_ids=[[1, 2]] * len(completions),
                trainer_state=object(), **columns)


def test_reward_func_scores_standard_and_conversational_inputs(scalar_rm):
    prompts, completions = ["1 + 2", "3 - 1"], ["1 + 2 = 3", "3 - 1 = 2"]
    func = scalar_rm.as_reward_func()
    assert func.__name__ == "nexus_scalar"
    expected = scalar_rm.score(prompts, completions).rewards.tolist()
    rewards = call_like_trl(func, prompts, completions, solution=["3", "2"])
    assert isinstance(rewards, list) and all(type(r) is float for r in rewards)
    assert rewards == pytest.approx(expected, abs=1e-6)
    chat_prompts = [[{"role": "user", "content": p}] for p in prompts]
    chat_completions = [[{"role": "assistant", "content": c}] for c in completions]
    assert call_like_trl(func, chat_prompts, chat_completions) == pytest.approx(expected, abs=1e-6)
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": c}, {"type": "image"}]}] for c in completions]
    assert call_like_trl(func, prompts, parts) == pytest.approx(expected, abs=1e-6)


def test_reward_func_of_a_rules_model_reads_references_from_a_column():
    rm = RulesRewardModel(["math_correct"])
    func = rm.as_reward_func({"references": "answer"}, name="correct")
    assert func.__name__ == "correct"
    completions = [[{"role": "assistant", "content": "1 + 2 = 3"}], [{"role": "assistant", "content": "1 + 2 = 4"}]]
    prompts = [[{"role": "user", "content": "1 + 2"}]] * 2
    assert call_like_trl(func, prompts, completions, answer=["3", "3"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="dataset column 'answer' \\(for score's references=\\) was not passed"):
        call_like_trl(func, ["1 + 2"], ["1 + 2 = 3"], solution=["3"])
    with pytest.raises(ValueError, match="completions\\[1\\] is int"):
        call_like_trl(func, ["a", "b"], ["x", 3], answer=["1", "2"])


def test_reward_func_renders_messages_and_normalises(scalar_rm):
    rm = RulesRewardModel([{"name": "length", "low": 3, "high": 9}])
    render = lambda messages: " ".join(f"{m['role']} {m['content']}" for m in messages)  # noqa: E731
    func = rm.as_reward_func(render_messages=render, normalize=False)
    # "assistant a b" has 3 words: inside the range only because the role is rendered too.
    assert call_like_trl(func, ["p"], [[{"role": "assistant", "content": "a b"}]]) == [1.0]
    rm.set_normalizer(FixedStandardize(mean=1.0, std=4.0, eps=0.0))
    assert call_like_trl(rm.as_reward_func(), ["p"], ["a"]) == pytest.approx([(1 / 3 - 1.0) / 4.0])
