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


def _linear_head(rm) -> tuple[nn.Linear, list[str]]:
    """The RM's single linear score layer and its output labels; a ValueError saying why not."""
    from nexus.models.multi_objective import MultiObjectiveRewardModel
    from nexus.models.scalar import ScalarRewardModel

    if type(rm) is ScalarRewardModel:
        layer, labels = rm.head.net, ["reward"]
    elif type(rm) is MultiObjectiveRewardModel:
        layer, labels = rm.head.net.net, list(rm.objectives)
    else:
        raise ValueError(f"{type(rm).__name__} cannot be exported as a sequence classifier: only the scalar and "
                         "multi-objective RMs read one linear layer on pooled features (an ensemble, a process, "
                         "outcome, rules or generative RM scores otherwise); export a scalar RM trained on it")
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"{type(rm).__name__} has an MLP head (head_hidden={rm.head_hidden}); a sequence classifier "
                         "has one linear layer: train with head_hidden=0 to export")
    return layer, labels


def _check_exportable(rm) -> tuple[nn.Linear, list[str]]:
    """The RM's linear score layer and labels, if one sequence classifier can compute its rewards;
    else a ValueError that says what to train instead."""
    layer, labels = _linear_head(rm)
    backbone = rm.backbone
    if backbone.lm_logprobs:
        raise ValueError("the backbone appends LM log-likelihood features (lm_logprobs=True), which a sequence "
                         "classifier cannot compute: train with backbone.lm_logprobs=false to export")
    if backbone.is_encoder and backbone.pooling != "pooler" or not backbone.is_encoder and backbone.pooling != "last":
        raise ValueError(f"pooling={backbone.pooling!r}: a sequence classifier reads a decoder's last token or an "
                         "encoder's pooler ('pooler'); train with that pooling to export")
    tokenizer = backbone.tokenizer
    if not backbone.is_encoder and backbone.append_eos and tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError("the tokenizer's pad token is its eos token, which ends every input: transformers pools at "
                         "the last token that is not pad, so it would read another token; give the tokenizer its "
                         "own pad token before training to export")
    return layer, labels


def export_hf(rm, path, *, drop_bias: bool = False) -> Path:
    """Write `rm` as an `AutoModelForSequenceClassification` checkpoint (safetensors, its tokenizer,
    no custom code) whose logits on the text `rm.backbone.token_ids` reads are `rm.score`'s raw
    rewards (no normaliser): a decoder pooled at its last token, or an encoder through its pooler.
    LoRA adapters are merged. Decoders' `score` layer has no bias: an RM whose head bias is not 0
    is refused unless `drop_bias`, which exports logits = reward - bias (a constant shift that
    Bradley-Terry preferences and best-of-N choices do not see; config.json records it as
    `nexus_reward_bias`). `path` must be new or an empty folder; it is written whole, then renamed.
    """
    import copy
    import os

    from transformers import AutoModelForSequenceClassification

    layer, labels = _check_exportable(rm)
    backbone, tokenizer = rm.backbone, rm.backbone.tokenizer
    target = Path(os.path.abspath(path))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not an empty folder; export writes a new one")
    body = copy.deepcopy(backbone.model)
    if hasattr(body, "merge_and_unload"):  # LoRA: fold the adapters into the weights
        body = body.merge_and_unload()
    body = body.base_model
    config = copy.deepcopy(body.config)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.pad_token_id = tokenizer.pad_token_id
    config.architectures = None
    seq = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False).to(backbone.dtype)
    seq.base_model.load_state_dict(body.state_dict())
    out, _ = _classifier(seq)
    bias = layer.bias.detach().float() if layer.bias is not None else torch.zeros(len(labels))
    if out.bias is None and bias.abs().max() > 0:
        if not drop_bias:
            raise ValueError(f"{type(seq).__name__}'s score layer has no bias, and this RM's head bias is "
                             f"{bias.tolist()}: its logits would be the reward minus that constant. Pass "
                             "drop_bias=True to export anyway (Bradley-Terry preferences and best-of-N do not see it)")
        seq.config.nexus_reward_bias = bias.tolist() if len(labels) > 1 else float(bias[0])
    with torch.no_grad():
        out.weight.copy_(layer.weight.to(out.weight.dtype))
        if out.bias is not None:
            out.bias.copy_(bias.to(out.bias.dtype))
    _write_whole(target, lambda folder: (seq.save_pretrained(folder, safe_serialization=True),
                                         tokenizer.save_pretrained(folder)))
    return target


def _write_whole(target: Path, write) -> None:
    """`write(folder)` into a fresh sibling of `target`, then renamed onto it (new or empty), so a
    reader sees no folder or a whole one; the sibling is removed if writing fails."""
    import os
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            target.rmdir()  # empty, checked before anything was built
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
