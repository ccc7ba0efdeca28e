"""Generative RM (LLM-as-judge): logit readings by hand, swap symmetry, parsing, training, save/load, CAI."""

from __future__ import annotations

import json
import math
import random
import warnings

import pytest
import torch
from hydra.utils import instantiate

import nexus
from nexus import metrics
from nexus.backbones import load_backbone
from nexus.tasks import arithmetic
from nexus.tasks.arithmetic import make_problem
from nexus.data.collators import IGNORE
from nexus.data.formats import OutcomeExample, PairwiseExample, read_pairwise
from nexus.data.judge import VerdictCollator, rationale_writer
from nexus.tasks.arithmetic.rationale import arithmetic_rationale
from nexus.models import judge as judge_lib
from nexus.models.generative import GenerativeRewardModel
from nexus.models.judge import verdict_report
from nexus.prompts import PROMPT_DIR
from nexus.sampling.critique_revision import critique_revise
from nexus.sampling.policy import Policy
from nexus.training import RewardTrainer, RewardTrainingArguments
from tests.conftest import compose_train

PROMPTS = ["1 + 2", "3 + 4 - 5 + 6", "", "a prompt with unicode: é ✓"]
RESPONSES = ["1 + 2 = 3", "", "hé", "9 - 1 = 8\nextra line"]
# A chat template for the byte tokenizer, to check rendering through `apply_chat_template`.
CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


def template(name: str) -> str:
    return (PROMPT_DIR / f"{name}.txt").read_text().rstrip()


def make_judge(name: str = "tiny-gpt2", chat: bool = False, lora=None, **kwargs) -> GenerativeRewardModel:
    """A tiny judge whose weights are spread wide (std 0.3), so verdict logits differ by whole units."""
    backbone = load_backbone(name, lm_logprobs=True, lora=lora)
    if chat:
        backbone.tokenizer.chat_template = CHAT
    rm = GenerativeRewardModel(backbone, **kwargs)
    torch.manual_seed(1)
    with torch.no_grad():
        for pname, p in rm.named_parameters():
            if p.ndim > 1 and "lora" not in pname:
                p.normal_(0.0, 0.3)
    return rm.eval()


def hand_logits(rm: GenerativeRewardModel, text: str, add_special: bool = True) -> torch.Tensor:
    """'n v' logits of one unpadded text, straight from the LM."""
    ids = rm.backbone.tokenizer(text, add_special_tokens=add_special)["input_ids"]
    with torch.no_grad():
        return rm.lm(input_ids=torch.tensor([ids])).logits[0].float()


def plain(*messages: str) -> str:
    return "\n\n".join(messages) + "\n\n"


def token(rm, text: str) -> int:
    (only,) = rm.backbone.tokenizer(text, add_special_tokens=False)["input_ids"]
    return only


@pytest.mark.parametrize("name,chat", [("tiny-gpt2", False), ("tiny-llama", False), ("tiny-gpt2", True)])
def test_verdict_log_odds_equal_logits_of_the_rendered_text(name, chat):
    rm = make_judge(name, chat=chat)
    assert rm.yes_no == ("Y", "N")  # "Yes" is three byte tokens, so the fallback pair is used
    rewards = rm.score(PROMPTS, RESPONSES).rewards
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        user = template("task").format(prompt=p, response=r) + "\n\n" + template("verdict").format(yes="Y", no="N")
        text = f"<user>{user}</s>\n<assistant>" if chat else plain(user)
        logits = hand_logits(rm, text, add_special=not chat)[-1]
        expected = logits[token(rm, "Y")] - logits[token(rm, "N")]
        assert abs(expected) > 0.05  # a constant judge would fail below
        torch.testing.assert_close(rewards[i], expected, atol=1e-4, rtol=0, msg=f"input {i}")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_verdicts_read_the_shared_template_once_and_agree_with_reading_each_context(name):
    rm = make_judge(name)
    rows = []
    hook = rm.lm.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(tuple(kwargs.get("input_ids", args[0] if args else None).shape)),
        with_kwargs=True)
    packed = rm.score(PROMPTS, RESPONSES).rewards
    assert [r for r, _ in rows] == [1]  # one row: the template's shared start once, then each context's rest
    rm.share_prefix = False
    alone = rm.score(PROMPTS, RESPONSES).rewards
    hook.remove()
    assert [r for r, _ in rows[1:]] == [len(PROMPTS)]
    assert rows[0][1] < rows[1][1] * len(PROMPTS)  # fewer tokens than the padded batch
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=0)


def test_rating_is_the_expectation_over_rating_tokens_with_ten_read_as_one_then_zero():
    rm = make_judge(mode="rating")
    assert rm.zero_id == token(rm, "0")  # bytes: "10" is "1" then "0"
    rewards = rm.score(PROMPTS[:2], RESPONSES[:2]).rewards
    for i in range(2):
        user = template("task").format(prompt=PROMPTS[i], response=RESPONSES[i]) + "\n\n" + template("rating")
        logits = hand_logits(rm, plain(user) + "1")
        digits = logits[-2, [token(rm, str(k)) for k in range(1, 10)]].softmax(-1)
        q = logits[-1].softmax(-1)[token(rm, "0")]
        probs = torch.cat([digits[:1] * (1 - q), digits[1:], digits[:1] * q])
        expected = (probs * torch.arange(1, 11)).sum()
        torch.testing.assert_close(rewards[i], expected, atol=1e-4, rtol=0)
    # where "10" is one token it is read directly; a split "1" shares its mass by P("0" | "1")
    first = torch.full((1, 12), -1e9)
    first[0, 5] = 0.0  # all the rating mass on the token standing for "1"
    after = torch.log(torch.tensor([[0.25, 0.75] + [1e-12] * 10]))  # P("0" | "1") = 0.25 (token 0)
    probs = judge_lib.rating_distribution(first, [5, 6, 7, 8, 9, 10, 11, 1, 2], after, zero_id=0)
    assert judge_lib.expected_rating(probs).item() == pytest.approx(0.75 * 1 + 0.25 * 10)


def test_compare_is_swap_symmetric_and_averages_both_orders_by_hand():
    rm = make_judge()
    prompts, a, b = ["1 + 2", "x", "long " * 10], ["1 + 2 = 3", "a", ""], ["1 + 2 = 4", "bb", "c"]
    p_ab, p_ba = rm.compare(prompts, a, b), rm.compare(prompts, b, a)
    torch.testing.assert_close(p_ab + p_ba, torch.ones(3), atol=1e-6, rtol=0)
    for i in range(3):
        def p_first(x, y):
            text = template("compare").format(prompt=prompts[i], response_first=x, response_second=y,
                                              first="A", second="B")
            logits = hand_logits(rm, plain(text))[-1]
            return torch.sigmoid(logits[token(rm, "A")] - logits[token(rm, "B")])
        expected = 0.5 * (p_first(a[i], b[i]) + 1 - p_first(b[i], a[i]))
        torch.testing.assert_close(p_ab[i], expected, atol=1e-5, rtol=0)
    first, second = rm.compare_orders(prompts, a, b)
    consistent = ((first > 0.5) == (second > 0.5)).float().mean().item()
    assert metrics.position_consistency(first, second) == pytest.approx(consistent)
    assert metrics.position_consistency([0.9, 0.2, 0.6], [0.8, 0.7, 0.4]) == pytest.approx(1 / 3)


def test_generated_verdicts_are_parsed_and_unreadable_output_is_nan_with_a_flag(monkeypatch):
    assert judge_lib.parse_verdict("**Yes**, it is", "Yes", "No") == 1.0
    assert judge_lib.parse_verdict(" no.", "Yes", "No") == 0.0
    assert judge_lib.parse_verdict("Yesterday", "Yes", "No") is None
    assert judge_lib.parse_verdict("", "Yes", "No") is None
    assert judge_lib.parse_rating(" 7/10") == 7.0 and judge_lib.parse_rating("10") == 10.0
    assert judge_lib.parse_rating("11") is None and judge_lib.parse_rating("seven") is None
    rm = make_judge(read="generate")
    answers = {"1 + 2": "Y", "3 + 4 - 5 + 6": "maybe", "": "N.", "a prompt with unicode: é ✓": "\x00\x01"}
    seen = []

    def fake_generate(ids, n=1, temperature=0.0, max_new_tokens=64):
        texts = [rm.backbone.tokenizer.decode(seq) for seq in ids]
        seen.extend(texts)
        return [[next(v for k, v in answers.items() if f"Question:\n{k}\n" in t)] * n for t in texts]

    monkeypatch.setattr(rm, "generate", fake_generate)
    out = rm.score(PROMPTS, RESPONSES)
    assert out.rewards[0] == 1.0 and out.rewards[2] == 0.0
    assert out.rewards[1].isnan() and out.rewards[3].isnan()
    assert out.extras["unreadable"].tolist() == [False, True, False, True]
    assert all(t.endswith("Reply with Y or N only.\n\n") for t in seen)  # the same context as the logits path
    real = make_judge(read="generate", answer_max_tokens=3).score(["q"], ["r"])  # random bytes: unreadable
    assert real.rewards.isnan().item() and real.extras["unreadable"].item()


def test_a_multi_token_verdict_word_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"verdict_words\[0\]\[0\] 'Yes' is not a single token"):
        make_judge(verdict_words=("Yes", "No"))
    with pytest.raises(ValueError, match=r"verdict_words\[0\] = \[True, False\]: expected a pair of strings"):
        make_judge(verdict_words=[[True, False]])  # what unquoted YAML Yes/No becomes
    with pytest.raises(ValueError, match="both words are the same token"):
        make_judge(verdict_words=[("Y", "Y")])
    assert judge_lib.single_token_id(load_backbone("tiny-gpt2").tokenizer, "Yes") is None


def test_a_backbone_loaded_without_its_lm_head_gets_its_tied_head_back():
    bare, full = load_backbone("tiny-gpt2"), load_backbone("tiny-gpt2", lm_logprobs=True)
    with torch.no_grad():
        for p in bare.model.parameters():
            p.normal_(0.0, 0.3)
    full.model.transformer.load_state_dict(bare.model.state_dict())
    rebuilt, reference = GenerativeRewardModel(bare).eval(), GenerativeRewardModel(full).eval()
    assert rebuilt.lm.get_output_embeddings().weight is rebuilt.lm.get_input_embeddings().weight
    torch.testing.assert_close(rebuilt.score(PROMPTS, RESPONSES).rewards, reference.score(PROMPTS, RESPONSES).rewards)
    with pytest.raises(ValueError, match="encoder"):
        GenerativeRewardModel(load_backbone("tiny-bert"))


def test_explain_averages_the_verdict_probability_over_critiques(monkeypatch):
    rm = make_judge(explain=True, n_critiques=2, critique_temperature=1.0)
    critiques = [" step one looks wrong ", "fine"]
    monkeypatch.setattr(rm, "generate", lambda ids, n=1, temperature=0.0, max_new_tokens=64: [critiques] * len(ids))
    out = rm.score(["1 + 2"], ["1 + 2 = 4"])
    task = template("task").format(prompt="1 + 2", response="1 + 2 = 4")
    z = []
    for c in critiques:
        logits = hand_logits(rm, plain(f"{task}\n\n{template('critique')}", c.strip(),
                                       template("verdict").format(yes="Y", no="N")))[-1]
        z.append(logits[token(rm, "Y")] - logits[token(rm, "N")])
    p = torch.sigmoid(torch.stack(z)).mean()
    torch.testing.assert_close(out.rewards[0], torch.log(p / (1 - p)), atol=1e-4, rtol=0)
    assert out.explanations == ["[critique 1] step one looks wrong\n\n[critique 2] fine"]
    with pytest.raises(ValueError, match="repeat one greedy critique"):
        make_judge(explain=True, n_critiques=2)


def test_principles_are_judged_one_by_one_and_combined_with_weights():
    rm = make_judge(principles=["Be correct.", "Be brief."], principle_weights=[1.0, 3.0])
    out = rm.score(PROMPTS[:2], RESPONSES[:2])
    per = out.extras["principle_rewards"]
    assert per.shape == (2, 2)
    torch.testing.assert_close(out.rewards, 0.25 * per[:, 0] + 0.75 * per[:, 1])
    task = template("task").format(prompt=PROMPTS[1], response=RESPONSES[1])
    question = template("principle_verdict").format(principle="Be brief.", yes="Y", no="N")
    logits = hand_logits(rm, plain(task + "\n\n" + question))[-1]
    torch.testing.assert_close(per[1, 1], logits[token(rm, "Y")] - logits[token(rm, "N")], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"principle_weights\[1\]"):
        make_judge(principles=["a", "b"], principle_weights=[1.0, -1.0])


def test_save_load_round_trip_with_lora_and_custom_prompts(tmp_path):
    prompts_dir = tmp_path / "my_prompts"
    prompts_dir.mkdir()
    (prompts_dir / "verdict.txt").write_text("Correct? {yes}/{no}\n")
    rm = make_judge("tiny-llama", lora={"r": 4}, prompt_dir=str(prompts_dir), principles=["Be right."])
    with torch.no_grad():  # trained-looking adapters: B is zero at initialisation
        for name, p in rm.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    before = rm.score(PROMPTS, RESPONSES)
    rm.save_pretrained(tmp_path / "judge")
    (prompts_dir / "verdict.txt").write_text("Something else {yes}\n")  # the checkpoint keeps its own copy
    loaded = nexus.load(tmp_path / "judge")
    after = loaded.score(PROMPTS, RESPONSES)
    assert isinstance(loaded, GenerativeRewardModel) and loaded.templates["verdict"] == "Correct? {yes}/{no}"
    torch.testing.assert_close(after.rewards, before.rewards, atol=0, rtol=0)
    torch.testing.assert_close(after.extras["principle_rewards"], before.extras["principle_rewards"], atol=0, rtol=0)
    assert not list((tmp_path / "judge").rglob("*.bin")) and not list((tmp_path / "judge").rglob("*.pt"))


def keyword_outcomes(n: int, seed: int) -> list[OutcomeExample]:
    """Outcome data a tiny judge can learn quickly: a response saying 'ok' is correct, 'bad' is not."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        good = rng.random() < 0.5
        filler = "".join(rng.choice("xyz") for _ in range(rng.randint(0, 4)))
        out.append(OutcomeExample(f"q{rng.randint(0, 9)}", f"{filler} {'ok' if good else 'bad'}", float(good)))
    return out


def verdict_loss(rm, examples) -> float:
    with torch.no_grad():
        return rm(**rm.data_collator()(examples))["loss"].item()


def auroc_of(rm, examples) -> float:
    rewards = rm.score([ex.prompt for ex in examples], [ex.response for ex in examples]).rewards
    return metrics.auroc(rewards, [ex.label for ex in examples])


def test_lora_fine_tuning_lowers_the_verdict_loss(tmp_path):
    short = tmp_path / "prompts"  # short templates keep the byte-level sequences, and the test, short
    short.mkdir()
    (short / "task.txt").write_text("{prompt}|{response}")
    (short / "verdict.txt").write_text("?")
    torch.manual_seed(0)
    rm = GenerativeRewardModel(load_backbone("tiny-gpt2", lm_logprobs=True, lora={"r": 8, "alpha": 16}),
                               prompt_dir=str(short))
    held_out = keyword_outcomes(64, seed=1)
    batch = rm.data_collator()(held_out[:3])
    labelled = batch["labels"] != IGNORE
    assert labelled.sum(-1).tolist() == [1, 1, 1]  # one verdict target per example ...
    last = batch["attention_mask"].sum(-1) - 1
    assert labelled[torch.arange(3), last].all()  # ... read where the next token is the verdict
    assert batch["labels"][labelled].tolist() == [ex.label for ex in held_out[:3]]
    before, auroc_before = verdict_loss(rm.eval(), held_out), auroc_of(rm, held_out)
    args = RewardTrainingArguments(output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=16,
                                   learning_rate=1e-2, save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True)
    RewardTrainer(model=rm.train(), args=args, train_dataset=keyword_outcomes(480, seed=0)).train()
    after = verdict_loss(rm.eval(), held_out)
    # full-vocabulary NLL of the verdict token: from uniform (log 259 = 5.56) down by more than 0.5 nats
    assert before == pytest.approx(math.log(259), abs=0.1) and after < before - 0.5, (before, after)
    report = verdict_report(rm, held_out)
    assert auroc_before < 0.8 and report["auroc"] > 0.95 and report["auroc"] == auroc_of(rm, held_out)
    assert all(p.requires_grad == ("lora" in n) for n, p in rm.named_parameters())


def test_rationale_targets_cover_the_critique_then_eos():
    problem = make_problem([1, 2, 3], ["+", "*"])
    wrong = "1 + 2 = 4\n4 * 3 = 12"
    assert arithmetic_rationale(problem.prompt, wrong) == "1 + 2 = 3 not 4"  # recomputed, then compared
    assert arithmetic_rationale(problem.prompt, "1 + 2 = 3") == "1 + 2 = 3 ok\nunfinished"
    assert arithmetic_rationale(problem.prompt, "Step 1: 2+1 = 3\n3 * 3 = 9") == "1 + 2 = 3 ok\n3 * 3 = 9 ok"
    assert arithmetic_rationale(problem.prompt, "1 + 3 = 4\n4 * 3 = 12") == "1 + 2 = 3 not 1 + 3 = 4"
    assert arithmetic_rationale(problem.prompt, "1 + 2 = 3\n3 * 3 = 9\n9 + 1 = 10").endswith("9 + 1 = 10 extra")
    rm = make_judge(rationale="arithmetic")
    batch = rm.data_collator()([OutcomeExample(problem.prompt, wrong, 0.0)])
    ids, targets = batch["input_ids"][0], batch["lm_targets"][0]
    rationale = arithmetic_rationale(problem.prompt, wrong)
    span = (targets != -100).nonzero().flatten()
    predicted = ids[span[:-1] + 1]
    assert rm.backbone.tokenizer.decode(predicted) == rationale and targets[span[:-1]].tolist() == predicted.tolist()
    assert targets[span[-1]].item() == rm.backbone.tokenizer.eos_token_id
    assert (batch["labels"][0] != IGNORE).sum() == 1 and batch["labels"][0, -1] == 0.0


class SuffixPolicy(Policy):
    """Revises by copying the draft out of the revision request and adding a marked fix."""

    def __init__(self):
        self.requests = []

    def spec(self):
        return {"policy": "suffix"}

    def complete(self, prompts, prefixes, n, temperature=1.0, seed=0):
        self.requests += list(prompts)
        drafts = [p.split("Here is a draft answer:\n", 1)[1].split("\n\nA reviewer", 1)[0] for p in prompts]
        return [[f"{d} [fixed]"] * n for d in drafts]


def test_critique_revision_writes_valid_pairwise_jsonl(tmp_path, monkeypatch):
    rm = make_judge(critique_max_tokens=6)
    policy = SuffixPolicy()
    prompts, responses = ["1 + 2", "3 - 1", "5 + 5"], ["1 + 2 = 4", "3 - 1 = 2", "5 + 5 = 10"]
    pairs = critique_revise(rm, policy, prompts, responses, ["Be correct.", "Be brief."], n_rounds=2, seed=3)
    path = tmp_path / "cai.jsonl"
    from nexus.data.formats import write_jsonl

    assert write_jsonl(path, pairs) == 3
    back = read_pairwise(path)
    assert [p.chosen for p in back] == [f"{r} [fixed] [fixed]" for r in responses]
    assert [p.rejected for p in back] == responses and [p.prompt for p in back] == prompts
    assert all(len(p.extra["critiques"]) == 2 and p.extra["rounds"] == 2 for p in back)
    assert all(len(d) == 1 and d[0] in ("Be correct.", "Be brief.") for p in back for d in p.extra["principles"])
    assert back[0].extra["critiques"][0] in policy.requests[0]  # the policy saw the judge's critique
    monkeypatch.setattr(SuffixPolicy, "complete", lambda self, p, x, n, t=1.0, s=0: [["1 + 2 = 4"]] * len(p))
    with pytest.warns(UserWarning, match="1 of 1 revisions"):
        assert critique_revise(rm, SuffixPolicy(), prompts[:1], responses[:1]) == []


def test_hydra_config_instantiates_scores_and_trains(tmp_path):
    from experiments.train import run

    lora = "backbone.lora={r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}"
    cfg = compose_train(tmp_path, ["model=generative", "backbone=tiny-gpt2", lora, "model.rationale=arithmetic",
                                   "trainer=debug", "trainer.max_steps=2", "trainer.per_device_train_batch_size=4",
                                   "data.n_train=32", "data.n_eval=8", "data.n_calibration=0", "data.eval_splits=[id]"])
    rm = instantiate(cfg.model, backbone=instantiate(cfg.backbone))
    assert isinstance(rm, GenerativeRewardModel) and rm.verdict_words == [("Yes", "No"), ("Y", "N")]
    assert rm.score(["1 + 1", "2 - 1"], ["1 + 1 = 2", ""]).rewards.isfinite().all()
    model = run(cfg, tmp_path)
    loaded = nexus.load(tmp_path / "model")
    torch.testing.assert_close(loaded.score(PROMPTS, RESPONSES).rewards, model.score(PROMPTS, RESPONSES).rewards)
    assert "| id |" in (tmp_path / "results.md").read_text()


def test_solve_first_judge_solves_the_prompt_before_it_is_shown_the_response(tmp_path):
    problem = make_problem([1, 2, 3], ["+", "*"])
    wrong = "1 + 2 = 4\n4 * 3 = 12"
    with pytest.raises(ValueError, match="explain=True"):
        make_judge(solve_first=True)
    rm = make_judge(prompt_dir="compact", explain=True, solve_first=True, rationale="arithmetic_solution",
                    critique_max_tokens=8)
    yes, no = rm.yes_no
    solution = "1 + 2 = 3\n3 * 3 = 9"
    ids, (start, end) = rm.verdict_ids(problem.prompt, wrong, None, solution)
    text = rm.backbone.tokenizer.decode(ids)
    assert text == f"{problem.prompt}\n\n{solution}\n\n{wrong}\n\nCorrect? {yes}/{no}\n\n"
    assert rm.backbone.tokenizer.decode(ids[start:end]) == solution
    # the critique context shows the prompt only: the judge's solution cannot copy the response
    assert rm.critique_request(problem.prompt, wrong) == problem.prompt
    batch = rm.data_collator()([OutcomeExample(problem.prompt, wrong, 0.0)])
    span = (batch["lm_targets"][0] != -100).nonzero().flatten()
    assert rm.backbone.tokenizer.decode(batch["input_ids"][0][span[:-1] + 1]) == solution
    out = rm.score([problem.prompt], [wrong])
    assert out.explanations is not None and torch.isfinite(out.rewards).all()
    loaded = nexus.load(rm.save_pretrained(tmp_path / "judge"))
    assert loaded.solve_first and loaded.templates == rm.templates
    assert torch.equal(loaded.score([problem.prompt], [wrong]).rewards, out.rewards)


def test_prompt_sets_by_name_and_a_missing_prompt_dir_is_an_error(tmp_path):
    from nexus.prompts import load_templates

    compact = load_templates("compact")
    assert compact["task"] == "{prompt}\n\n{response}" and compact["solve"] == "{prompt}"
    assert load_templates()["task"] != compact["task"]
    with pytest.raises(FileNotFoundError, match="no-such-prompts"):
        load_templates(tmp_path / "no-such-prompts")


def test_generation_stops_at_the_judges_positions_with_a_warning():
    rm = make_judge()
    rm.backbone.position_limit = 24
    ids = rm.token_ids("1 + 2 + 3 + 4 + 5 =")
    assert len(ids) < 24
    with pytest.warns(UserWarning, match="generation cut"):
        texts = rm.generate([ids], max_new_tokens=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exactly the room left: no cut, no warning
        assert rm.generate([ids], max_new_tokens=24 - len(ids)) == texts
    assert rm.generate([ids], max_new_tokens=24 - len(ids) + 1) == texts  # greedy: one more token was cut


@pytest.mark.slow
def test_genrm_probe_trains_the_ladder_lm_as_a_verifier(tmp_path):
    from experiments.genrm_probe import main as probe
    from nexus.tasks.arithmetic.templates import SEEN_TEMPLATES

    out = probe(["--variant", "verdict", "--levels", "level1", "--eval-level", "level1", "--n-train", "64",
                 "--epochs", "1", "--output-dir", str(tmp_path)])
    # before training, the probe's accuracy is the untrained judge's own, read independently here
    import dataclasses

    judge = GenerativeRewardModel(load_backbone("arith-lm-ladder", lm_head=True, lm_logprobs=False),
                                  prompt_dir="compact").eval()
    task = dataclasses.replace(arithmetic.SPLITS["level1"], templates=SEEN_TEMPLATES, partition="eval")
    pairs = arithmetic.generate(200, 5, task)["pairwise"]
    yes, no = judge.yes_no_ids
    wins = 0.0
    for p in pairs[:200]:
        logits = [judge.next_token_logits([judge.verdict_ids(p.prompt, r)[0]])[0, -1] for r in (p.chosen, p.rejected)]
        c, r = (float(x[yes] - x[no]) for x in logits)
        wins += 1.0 if c > r else 0.5 if c == r else 0.0
    assert out["accuracy_before"] == pytest.approx(wins / 200, abs=0.006)  # float ties aside
    assert out["outcome_examples"] == 128 and 0.0 <= out["accuracy_after"] <= 1.0 and out["train_s"] > 0


def keyword_pairs(n: int, seed: int) -> list[PairwiseExample]:
    """Pairs a tiny judge can learn quickly: the answer saying 'ok' is preferred to the one saying 'bad'."""
    rng = random.Random(seed)
    fill = lambda: "".join(rng.choice("xyz") for _ in range(rng.randint(0, 3)))  # noqa: E731
    return [PairwiseExample(f"q{rng.randint(0, 9)}", f"{fill()} ok", f"{fill()} bad") for _ in range(n)]


@pytest.mark.parametrize("orders", ["first", "both"])
def test_a_pairwise_judge_trained_in_both_orders_loses_the_position_bias_one_order_teaches(tmp_path, orders):
    """Trained on pairs that always list the better answer first, the judge learns "A" whatever it is
    shown; trained on each pair in both orders, it learns which answer is better."""
    short = tmp_path / "prompts"
    short.mkdir()
    (short / "task.txt").write_text("{prompt}|{response}")
    (short / "compare.txt").write_text("{prompt}|{response_first}|{response_second}|{first}{second}")
    torch.manual_seed(0)
    rm = GenerativeRewardModel(load_backbone("tiny-gpt2", lm_head=True), prompt_dir=str(short))
    train, held = keyword_pairs(480, seed=0), keyword_pairs(64, seed=1)
    batch = rm.data_collator()(held[:2])  # both orders by default: rows (chosen first, rejected first) per pair
    last = batch["attention_mask"].sum(-1) - 1
    assert batch["labels"][torch.arange(4), last].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert batch["verdict_tokens"].tolist() == [list(rm.ab_ids)] * 4
    args = RewardTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=60, per_device_train_batch_size=16,
                                   learning_rate=1e-2, save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True)
    RewardTrainer(model=rm.train(), args=args, train_dataset=train,
                  data_collator=VerdictCollator(rm, pair_orders=orders)).train()
    prompts, chosen, rejected = ([getattr(p, f) for p in held] for f in ("prompt", "chosen", "rejected"))
    first, second = rm.eval().compare_orders(prompts, chosen, rejected)
    consistency = metrics.position_consistency(first, second)
    accuracy = float((rm.compare(prompts, chosen, rejected) > 0.5).float().mean())
    same_first, _ = rm.compare_orders(prompts, rejected, rejected)  # two identical answers
    if orders == "first":
        assert (first > 0.9).all() and (second < 0.1).all() and consistency == 0.0  # always "A"
        assert same_first.mean() > 0.9
    else:
        assert consistency > 0.95 and accuracy > 0.95 and (first > 0.5).all() and (second > 0.5).all()


def test_marks_rationale_copies_each_step_and_marks_the_first_wrong_one():
    problem = make_problem([1, 2, 3], ["+", "*"])
    marks = rationale_writer("arithmetic_marks")
    assert marks(problem.prompt, "1 + 2 = 3\n3 * 3 = 9") == "1 + 2 = 3 ok\n3 * 3 = 9 ok"
    assert marks(problem.prompt, "1 + 2 = 4\n4 * 3 = 12") == "1 + 2 = 4 no"  # stops at the first wrong step
    assert marks(problem.prompt, "1 + 2 = 3") == "1 + 2 = 3 ok\nunfinished"
    assert marks(problem.prompt, "1 + 2 = 3\n3 * 3 = 9\n9 + 1 = 10") == "1 + 2 = 3 ok\n3 * 3 = 9 ok\n9 + 1 = 10 extra"


def test_judge_position_study_reports_bias_before_and_after_swap_averaging(tmp_path):
    from experiments.judge_position import main as study

    rows = study(["--backbone", "tiny-llama", "--seeds", "0", "--n-train", "8", "--n-pairs", "6",
                  "--lora-modules", "all-linear", "--out", str(tmp_path)])
    assert [r["judge"] for r in rows] == ["zero-shot", "fine-tuned, one random order", "fine-tuned, both orders"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == rows and (tmp_path / "summary.md").exists()
    for row in rows:  # averaging over the swap removes position bias by construction
        assert row["consistency_swap_averaged"] == 1.0
        assert row["p_first_identical_swap_averaged"] == pytest.approx(0.5, abs=1e-6)
    # the zero-shot row, recomputed by hand from the judge's two one-order probabilities
    judge = GenerativeRewardModel(load_backbone("tiny-llama", lm_head=True), batch_size=16).eval()
    held = arithmetic.generate(6, 3000, arithmetic.SPLITS["id"])["pairwise"][:6]
    prompts, chosen, rejected = ([getattr(p, f) for p in held] for f in ("prompt", "chosen", "rejected"))
    first, second = judge.compare_orders(prompts, chosen, rejected)
    assert rows[0]["consistency"] == float(((first > 0.5) == (second > 0.5)).float().mean())
    assert rows[0]["accuracy_one_order"] == pytest.approx(float(((first > 0.5).sum() + (second > 0.5).sum()) / 12))
    same, _ = judge.compare_orders(prompts, chosen, chosen)
    assert rows[0]["p_first_identical"] == pytest.approx(
        float(torch.cat([same, judge.compare_orders(prompts, rejected, rejected)[0]]).mean()), abs=1e-6)


def test_zero_shot_judge_study_reports_the_judges_own_solve_rate_and_verdict_metrics(tmp_path):
    from experiments.judge_zero_shot import last_integer, main as study

    assert last_integer("So, the answer is 4 + 3 = 7.") == 7 and last_integer("-12") == -12
    assert last_integer("1,024 in all") == 1024 and last_integer("no number") is None
    rows = study(["--backbone", "arith-lm", "--levels", "single", "--n", "8", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "metrics.json").read_text()) == rows
    assert (tmp_path / "reliability.png").stat().st_size > 0 and (tmp_path / "summary.md").exists()
    row = rows[0]
    assert row["n"] == 8 and 0.0 <= row["solve_rate"] <= 1.0
    assert row["dataset_auroc_low"] <= row["dataset_auroc"] <= row["dataset_auroc_high"]
    # the verdict AUROC, recomputed from the judge's rewards on the same outcome examples
    import dataclasses

    from nexus.tasks.arithmetic.templates import SEEN_TEMPLATES

    task = dataclasses.replace(arithmetic.SPLITS["level1"], templates=SEEN_TEMPLATES, partition="eval",
                               min_steps=1, max_steps=1)
    outcome = arithmetic.generate(8, 11, task)["outcome"][:8]
    judge = GenerativeRewardModel(load_backbone("arith-lm", lm_head=True), batch_size=16).eval()
    rewards = judge.score([e.prompt for e in outcome], [e.response for e in outcome]).rewards
    assert row["dataset_auroc"] == pytest.approx(metrics.auroc(rewards, [e.label for e in outcome]), abs=1e-9)


def hand_confirmation(rm, ids: list[int], start: int, end: int) -> float:
    """The confirmation log-odds of one unpadded context whose check spans [start, end), by hand."""
    eos, (yes, no) = rm.backbone.tokenizer.eos_token_id, rm.yes_no_ids
    with torch.no_grad():
        logp = rm.lm(input_ids=torch.tensor([ids])).logits[0].double().log_softmax(-1)
    path = sum(float(logp[start - 1 + k, t]) for k, t in enumerate([*ids[start:end], eos]))
    log_p = path + math.log(torch.sigmoid(logp[-1, yes] - logp[-1, no]).item())
    return log_p - math.log(-math.expm1(log_p))


def test_confirmation_is_the_confirming_check_then_yes_read_teacher_forced_by_hand():
    from nexus.tasks.arithmetic.rationale import arithmetic_confirmation

    problem = make_problem([12, 7, 3, 5], ["+", "*", "-"])
    right = "\n".join(problem.steps)
    # for a right solution the confirmation is exactly the check the judge is trained to write
    assert arithmetic_confirmation(problem.prompt, right) == arithmetic_rationale(problem.prompt, right)
    responses = [right, "12 + 7 = 19\n19 * 3 = 56\n56 - 5 = 51", "Step 1: 7+12 = 19", "no idea at all"]
    assert arithmetic_confirmation(problem.prompt, responses[1]) == "12 + 7 = 19 ok\n19 * 3 = 56 ok\n56 - 5 = 51 ok"
    assert arithmetic_confirmation(problem.prompt, responses[2]) == "7 + 12 = 19 ok"
    rm = make_judge(rationale="arithmetic", read="confirmation", batch_size=3)  # mixed lengths in one chunk
    rewards = rm.score([problem.prompt] * 4, responses).rewards
    contexts = [rm.verdict_ids(problem.prompt, r, None, arithmetic_confirmation(problem.prompt, r)) for r in responses]
    for reward, (ids, (start, end)) in zip(rewards.tolist(), contexts):
        assert reward == pytest.approx(hand_confirmation(rm, ids, start, end), rel=1e-4, abs=1e-4)
    # a context longer than the judge's positions loses its start, as everywhere; the check is still read
    (ids, (start, end)), cut = contexts[0], 5
    rm.backbone.max_length = len(ids) - cut
    with pytest.warns(UserWarning, match="first tokens were cut"):
        short = rm.score([problem.prompt] * 2, [right, responses[2]]).rewards.tolist()
    assert short[0] == pytest.approx(hand_confirmation(rm, ids[cut:], start - cut, end - cut), rel=1e-4, abs=1e-4)
    assert short[1] == pytest.approx(rewards[2].item(), abs=1e-4)  # a context that fits is read as before
    rm.backbone.max_length = len(ids) - start  # no room for the check, the question and the token before
    with pytest.raises(ValueError, match="input 0: its confirming check"):
        rm.score([problem.prompt], [right])


@pytest.mark.parametrize("options,named", [({}, "rationale=None"), ({"rationale": "arithmetic", "explain": True},
                                           "explain=True"), ({"rationale": "arithmetic_solution"}, "no confirmation")])
def test_confirmation_reading_without_a_confirmable_rationale_is_an_error(options, named):
    with pytest.raises(ValueError, match=named):
        GenerativeRewardModel(load_backbone("tiny-gpt2", lm_head=True), read="confirmation", **options)
