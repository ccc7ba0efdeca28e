"""TRL's dataset formats through `datasets`: preference (standard or conversational, explicit or
implicit prompt), unpaired preference and stepwise supervision; conversations rendered by the
backbone's chat template exactly once, in scoring, training and the GRPO reward function."""

from __future__ import annotations

import json

import pytest
import torch

datasets = pytest.importorskip("datasets")

from nexus.backbones import load_backbone  # noqa: E402
from nexus.data.formats import DataFormatError, OutcomeExample, PairwiseExample, ProcessExample  # noqa: E402
from nexus.data.hf import load_hf, split_implicit_prompt  # noqa: E402
from nexus.models.outcome import OutcomeRewardModel  # noqa: E402
from nexus.models.process import ProcessRewardModel  # noqa: E402
from nexus.models.scalar import ScalarRewardModel  # noqa: E402
from nexus.training import RewardTrainer, RewardTrainingArguments  # noqa: E402

TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
SYSTEM = {"role": "system", "content": "Answer with the steps."}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def rows(form: str, n: int = 8) -> list[dict]:
    """n rows of one TRL preference form: right vs wrong arithmetic answers."""
    out = []
    for i in range(n):
        q, good, bad = f"{i} + {i + 1}", f"{i} + {i + 1} = {2 * i + 1}", f"{i} + {i + 1} = {2 * i + 2}"
        if form == "standard_explicit":
            out.append({"prompt": q, "chosen": good, "rejected": bad, "source": "test"})
        elif form == "standard_implicit":
            out.append({"chosen": f"Q: {q} A: {good}", "rejected": f"Q: {q} A: {bad}"})
        elif form == "conversational_explicit":
            out.append({"prompt": [SYSTEM, user(q)], "chosen": [assistant(good)], "rejected": [assistant(bad)]})
        else:
            out.append({"chosen": [SYSTEM, user(q), assistant(good)], "rejected": [SYSTEM, user(q), assistant(bad)]})
    return out


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def chat_rm(cls=ScalarRewardModel, **kwargs):
    torch.manual_seed(0)
    backbone = load_backbone("tiny-llama")
    backbone.tokenizer.chat_template = TEMPLATE
    return cls(backbone, head_hidden=16, dropout=0.0, **kwargs)


def train(rm, dataset, tmp_path, steps=3):
    before = [p.detach().clone() for p in rm.parameters() if p.requires_grad]
    args = RewardTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=4,
                                   learning_rate=1e-3, save_strategy="no", logging_steps=1, disable_tqdm=True)
    trainer = RewardTrainer(model=rm, args=args, train_dataset=dataset)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == steps and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, [p for p in rm.parameters() if p.requires_grad]))
    return trainer


@pytest.mark.parametrize("form", ["standard_explicit", "standard_implicit", "conversational_explicit",
                                  "conversational_implicit"])
def test_every_preference_form_loads_and_trains_from_a_datasets_load(tmp_path, form):
    path = write_jsonl(tmp_path / f"{form}.jsonl", rows(form))
    examples = load_hf(path)
    assert len(examples) == 8 and all(isinstance(e, PairwiseExample) for e in examples)
    first = examples[0]
    if form.startswith("standard"):
        assert (first.prompt, first.chosen, first.rejected) == (
            ("0 + 1", "0 + 1 = 1", "0 + 1 = 2") if form == "standard_explicit" else ("Q: 0 + 1 A: 0 + 1 =", " 1", " 2"))
    else:  # roles kept, the prompt being the messages both sides share
        assert [m["role"] for m in first.prompt] == ["system", "user"]
        assert first.chosen == (assistant("0 + 1 = 1"),) and first.rejected == (assistant("0 + 1 = 2"),)
    dataset = datasets.load_dataset("json", data_files=path, split="train")
    train(chat_rm(), dataset, tmp_path)  # RewardTrainer takes the datasets.Dataset as it is


def test_a_conversation_is_rendered_by_the_chat_template_exactly_once():
    rm = chat_rm().eval()
    tokenizer = rm.backbone.tokenizer
    prompt, answer = [SYSTEM, user("2 + 3")], [assistant("2 + 3 = 5")]
    text = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    assert text.count("<system>") == 1 and text.count("<assistant>") == 1
    expected = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert rm.backbone.token_ids([prompt], [answer])[0] == expected
    # a string prompt and response are one user and one assistant message
    assert rm.backbone.token_ids(["2 + 3"], ["2 + 3 = 5"]) == rm.backbone.token_ids([[user("2 + 3")]], [answer])
    with_system = rm.score([prompt], [answer]).rewards
    without = rm.score([[user("2 + 3")]], [answer]).rewards
    assert not torch.allclose(with_system, without)  # the system turn is read, not dropped


def test_grpo_reward_func_scores_the_conversation_with_its_roles():
    rm = chat_rm().eval()
    func = rm.as_reward_func()
    prompts = [[SYSTEM, user("2 + 3")], [user("1 + 1")]]
    completions = [[assistant("2 + 3 = 5")], [assistant("1 + 1 = 3")]]
    rewards = func(prompts=prompts, completions=completions, completion_ids=[[1]] * 2, trainer_state=None)
    expected = rm.score(prompts, completions).rewards.tolist()
    assert rewards == pytest.approx(expected, abs=1e-6)
    flattened = rm.score(["Answer with the steps.\n2 + 3", "1 + 1"], ["2 + 3 = 5", "1 + 1 = 3"]).rewards.tolist()
    assert abs(rewards[0] - flattened[0]) > 1e-4  # roles were not dropped into one user message


def test_unpaired_preference_trains_an_outcome_rm_and_stepwise_supervision_a_process_rm(tmp_path):
    unpaired = [{"prompt": [user(f"{i} + 1")], "completion": [assistant(f"{i} + 1 = {i + 1 + (i % 2)}")],
                 "label": i % 2 == 0} for i in range(8)]
    path = write_jsonl(tmp_path / "unpaired.jsonl", unpaired)
    examples = load_hf(path, kind="outcome")
    assert [e.label for e in examples[:3]] == [1.0, 0.0, 1.0] and isinstance(examples[0], OutcomeExample)
    train(chat_rm(OutcomeRewardModel), datasets.load_dataset("json", data_files=path, split="train"), tmp_path)
    stepwise = [{"prompt": f"{i} + 1 + 2", "completions": [f"{i} + 1 = {i + 1}", f"{i + 1} + 2 = {i + 3 + i % 2}"],
                 "labels": [True, i % 2 == 0]} for i in range(8)]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(stepwise), tmp_path / "stepwise.parquet")
    examples = load_hf(str(tmp_path / "stepwise.parquet"), kind="process")
    assert isinstance(examples[1], ProcessExample) and examples[1].labels == (1.0, 0.0)
    torch.manual_seed(0)
    prm = ProcessRewardModel(load_backbone("tiny-llama"), head_hidden=16, dropout=0.0)
    train(prm, datasets.load_dataset("parquet", data_files=str(tmp_path / "stepwise.parquet"), split="train"), tmp_path)


def test_implicit_prompts_split_as_trl_does():
    # the split moves back off a trailing space, which stays with the responses
    assert split_implicit_prompt("The sky is blue.", "The sky is green.") == ("The sky is", " blue.", " green.")
    assert split_implicit_prompt("12 = 3", "12 = 4") == ("12 =", " 3", " 4")
    assert split_implicit_prompt("ab", "ac") == ("a", "b", "c")
    conv = split_implicit_prompt([user("q"), assistant("a")], [user("q"), assistant("b")])
    assert conv == ([user("q")], [assistant("a")], [assistant("b")])


def test_bad_rows_and_formats_name_the_dataset_split_row_and_field(tmp_path):
    records = rows("standard_explicit", 4)
    del records[2]["rejected"]
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(DataFormatError, match=r"dataset .*bad\.jsonl \[train\] row 2: field 'rejected': expected a string .*got null"):
        load_hf(path)
    records = rows("standard_explicit", 4)
    records[1]["chosen"] = 5
    path = write_jsonl(tmp_path / "bad2.jsonl", records)
    with pytest.raises(DataFormatError, match=r"row 1: field 'chosen': expected a string or a list"):
        load_hf(path)
    path = write_jsonl(tmp_path / "pairs.jsonl", rows("standard_explicit", 4))
    with pytest.raises(DataFormatError, match=r"are pairwise data, but outcome data is needed"):
        load_hf(path, kind="outcome")
    renamed = load_hf(path, columns={"chosen": "rejected", "rejected": "chosen"}, limit=2)
    assert len(renamed) == 2 and renamed[0].chosen == "0 + 1 = 2"  # column mapping, and the row limit
    streamed = load_hf(path, streaming=True, limit=3)
    assert [e.prompt for e in streamed] == ["0 + 1", "1 + 2", "2 + 3"]


def test_data_hf_config_feeds_the_train_entry_point(tmp_path):
    from experiments.common import load_data
    from tests.conftest import compose_train

    path = write_jsonl(tmp_path / "pairs.jsonl", rows("conversational_implicit", 6))
    cfg = compose_train(tmp_path, ["data=hf", f"data.path={path}"])
    run = load_data(cfg.data, "pairwise")
    assert len(run.train) == 6 and run.evals == {} and run.train[0].prompt[0]["role"] == "system"


def test_a_single_data_file_never_evaluates_on_its_training_rows(tmp_path):
    from experiments.common import load_data
    from tests.conftest import compose_train

    path = write_jsonl(tmp_path / "pairs.jsonl", rows("standard_explicit", 10))
    other = write_jsonl(tmp_path / "test.jsonl", rows("standard_explicit", 3))
    with pytest.raises(ValueError, match=r"one data file, so data.eval_split=test.*eval_path.*eval_fraction"):
        load_data(compose_train(tmp_path, ["data=hf", f"data.path={path}", "data.eval_split=test"]).data, "pairwise")
    run = load_data(compose_train(tmp_path, ["data=hf", f"data.path={path}", "data.eval_split=test",
                                             f"data.eval_path={other}"]).data, "pairwise")
    assert len(run.train) == 10 and len(run.evals["test"]) == 3
    run = load_data(compose_train(tmp_path, ["data=hf", f"data.path={path}", "data.eval_split=test",
                                             "data.eval_fraction=0.3"]).data, "pairwise")
    held, kept = run.evals["test"], run.train
    assert len(held) == 3 and len(kept) == 7
    assert not {e.prompt for e in held} & {e.prompt for e in kept}  # disjoint rows


def test_conversations_round_trip_through_nexus_jsonl(tmp_path):
    from nexus.data.formats import read_pairwise, write_jsonl as write_examples

    examples = load_hf(write_jsonl(tmp_path / "conv.jsonl", rows("conversational_explicit", 3)))
    write_examples(tmp_path / "nexus.jsonl", examples)
    assert read_pairwise(tmp_path / "nexus.jsonl") == examples


def test_every_family_takes_conversations(tmp_path):
    """Families on a backbone render them; the judge and the rules read them as plain text."""
    from nexus.models.ensemble import EnsembleRewardModel
    from nexus.models.generative import GenerativeRewardModel
    from nexus.models.rules import RulesRewardModel

    prompt, answer = [SYSTEM, user("2 + 3")], [assistant("2 + 3 = 5")]
    ensemble = chat_rm(EnsembleRewardModel, n_members=2)
    train(ensemble, datasets.Dataset.from_list(rows("conversational_implicit")), tmp_path)  # bootstrap weights too
    assert ensemble.eval().score([prompt], [answer]).uncertainty is not None
    judge = GenerativeRewardModel(load_backbone("tiny-gpt2", lm_head=True))
    plain = "Answer with the steps.\n\n2 + 3"
    torch.testing.assert_close(judge.score([prompt], [answer]).rewards, judge.score([plain], ["2 + 3 = 5"]).rewards)
    assert judge.compare([prompt], [answer], ["2 + 3 = 6"]).shape == (1,)
    rules = RulesRewardModel([{"name": "length", "low": 1, "high": 3}])
    assert rules.score([prompt], [answer]).rewards.tolist() == rules.score([plain], ["2 + 3 = 5"]).rewards.tolist()
