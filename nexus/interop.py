"""Reward models in the format the rest of the ecosystem uses: `AutoModelForSequenceClassification`.

Import: `nexus.load(dir_or_hub_id)` on a sequence-classification checkpoint (TRL's, OpenRLHF's and
RewardBench's RM format) returns a nexus RM on the same weights: one output -> a scalar RM whose
reward is the checkpoint's logit, several -> a multi-objective RM with one objective per label.
The text is the backbone's (`Backbone.format`: the tokenizer's chat template, else prompt, blank
line, response), as the checkpoint's own classifier would read it:

- decoders are pooled at the last token, as transformers pools at the last token that is not
  pad; where the pad token is the eos token no eos is appended (else transformers would skip it);
- BERT-style encoders read `[CLS] prompt [SEP] response [SEP]` through their pooler (`tanh(W h_[CLS])`),
  then the classifier. Other classifier heads (RoBERTa's, DeBERTa's) are refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

SEQ_CLS_SUFFIX = "ForSequenceClassification"
# The classifier layer of each supported head layout, and whether the body's pooler feeds it.
HEADS = {"score": False, "classifier": True}


def is_sequence_classifier(config: dict) -> bool:
    """Whether a config.json describes a transformers sequence classifier (not a nexus checkpoint)."""
    return any(str(a).endswith(SEQ_CLS_SUFFIX) for a in config.get("architectures") or [])


def _classifier(model) -> tuple[nn.Linear, bool]:
    """The model's final linear layer and whether its body's pooler feeds it; a ValueError naming
    the head for layouts nexus cannot reproduce with a pooled feature and one linear layer."""
    for name, pooled in HEADS.items():
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Linear):
            if pooled and getattr(model.base_model, "pooler", None) is None:
                raise ValueError(f"{type(model).__name__}: a classifier without the body's pooler is not supported")
            return layer, pooled
    head = next((f"{n} ({type(m).__name__})" for n in HEADS if (m := getattr(model, n, None)) is not None),
                "none found")
    raise ValueError(f"{type(model).__name__}: its classification head {head} is not one linear layer on a "
                     "pooled feature (supported: decoders' `score`, BERT's pooler + `classifier`)")


def load_hf_reward_model(directory: Path, source: str, dtype=None, trust_remote_code: bool = False):
    """A nexus RM on the weights of the sequence classifier in `directory` (see the module docs)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nexus.backbones import Backbone, dtype_kwargs
    from nexus.backbones.hub import torch_dtype
    from nexus.checkpoint import checked_hf_config

    config = checked_hf_config(directory, AutoModelForSequenceClassification, trust_remote_code)
    kwargs = dict(local_files_only=True, trust_remote_code=trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(directory, config=config,
                                                               **dtype_kwargs(torch_dtype(dtype)), **kwargs).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
    layer, pooled = _classifier(model)
    pad_is_eos = tokenizer.pad_token_id is not None and tokenizer.pad_token_id == tokenizer.eos_token_id
    backbone = Backbone(model.base_model, tokenizer, source=source, pooling="pooler" if pooled else "last",
                        append_eos=not pad_is_eos)
    labels = [str(model.config.id2label.get(i, f"label_{i}")) for i in range(layer.out_features)]
    if layer.out_features == 1:
        from nexus.models.scalar import ScalarRewardModel

        rm = ScalarRewardModel(backbone, head_hidden=0, dropout=0.0)
        target = rm.head.net
    else:
        from nexus.models.multi_objective import MultiObjectiveRewardModel

        rm = MultiObjectiveRewardModel(backbone, objectives=labels, head_hidden=0, dropout=0.0)
        target = rm.head.net.net
    with torch.no_grad():
        target.weight.copy_(layer.weight.float())
        target.bias.copy_(layer.bias.float() if layer.bias is not None else torch.zeros_like(target.bias))
    return rm.eval()


def read_json(file: Path) -> dict:
    try:
        value = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}:{err.lineno}: malformed JSON: {err.msg}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(value).__name__}")
    return value
