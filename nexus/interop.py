"""Reward models in the format the rest of the ecosystem uses: `AutoModelForSequenceClassification`.

Import: `nexus.load(dir_or_hub_id)` on a sequence-classification checkpoint (TRL's, OpenRLHF's and
RewardBench's RM format) returns a nexus RM on the same weights: one output -> a scalar RM whose
reward is the checkpoint's logit, several -> a multi-objective RM with one objective per label.
The text is the backbone's (`Backbone.token_ids`): a conversation exactly as the model card's
`tokenizer.apply_chat_template(conversation, tokenize=True)` builds it, plain text (or, with
`prompt_format="raw"`, TRL's standard `prompt + response`) plus eos without a template:

- decoders are pooled at the last token, as transformers pools at the last token that is not
  pad; where the pad token is the eos token a trailing eos is dropped (transformers skips it);
- BERT-style encoders read `tokenizer(prompt, response)` (`[CLS] prompt [SEP] response [SEP]`,
  with its token types) through their pooler (`tanh(W h_[CLS])`), then the classifier. Other
  classifier heads (RoBERTa's, DeBERTa's) are refused by name.

Export writes the same layout back, so that TRL, RewardBench, OpenRLHF and plain transformers,
each building the text by its own convention, compute `rm.score`'s rewards (see `export_hf`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SEQ_CLS_SUFFIX = "ForSequenceClassification"
# The classifier layer of each supported head layout, and whether the body's pooler feeds it.
HEADS = {"score": False, "classifier": True}
# The pad token an export adds when the RM's tokenizer pads with its eos (or has no pad token).
EXPORT_PAD_TOKEN = "<|pad|>"
# The final norms of decoder bodies (GPT-2's `ln_f`, Llama's `norm`, ...), where a head bias can fold in.
FINAL_NORMS = ("ln_f", "norm", "final_layernorm", "final_layer_norm")


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


def load_hf_reward_model(directory: Path, source: str, dtype=None, trust_remote_code: bool = False,
                         prompt_format: str | None = None):
    """A nexus RM on the weights of the sequence classifier in `directory` (see the module docs).
    A reward bias recorded by `export_hf` (`nexus_reward_bias`, where the score layer has none) is
    added back, so a round trip scores as the exported RM did."""
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
    if prompt_format is None:  # what an export recorded, else the chat template's rendering
        prompt_format = getattr(model.config, "nexus_prompt_format", None) or "chat"
    backbone = Backbone(model.base_model, tokenizer, source=source, pooling="pooler" if pooled else "last",
                        prompt_format=prompt_format)
    labels = [str(model.config.id2label.get(i, f"label_{i}")) for i in range(layer.out_features)]
    if layer.out_features == 1:
        from nexus.models.scalar import ScalarRewardModel

        rm = ScalarRewardModel(backbone, head_hidden=0, dropout=0.0)
        target = rm.head.net
    else:
        from nexus.models.multi_objective import MultiObjectiveRewardModel

        rm = MultiObjectiveRewardModel(backbone, objectives=labels, head_hidden=0, dropout=0.0)
        target = rm.head.net.net
    recorded = getattr(model.config, "nexus_reward_bias", None)
    with torch.no_grad():
        target.weight.copy_(layer.weight.float())
        target.bias.copy_(layer.bias.float() if layer.bias is not None else torch.zeros_like(target.bias))
        if recorded is not None:
            target.bias.add_(torch.tensor(recorded, dtype=torch.float32).reshape(target.bias.shape))
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
    return layer, labels


def export_hf(rm, path) -> Path:
    """Write `rm` as an `AutoModelForSequenceClassification` checkpoint (safetensors, its tokenizer,
    no custom code) whose logits are `rm.score`'s raw rewards (no normaliser) on the text each
    consumer builds: `apply_chat_template(conversation, tokenize=True)` (the model card's usage,
    TRL's GRPO/RLOO reward models, RewardBench), or `tokenizer(prompt, response)` for an encoder.
    A decoder pooled at its last token, or an encoder through its pooler; LoRA adapters are merged.

    - A tokenizer whose pad token is its eos is exported as it is: the backbone never reads a
      trailing eos then, exactly as transformers pools. Only a backbone told to read it anyway
      (`append_eos=True`, as checkpoints of earlier versions were) gets its own pad token in the
      export (`EXPORT_PAD_TOKEN`, one embedding row added, never attended).
    - `prompt_format="raw"` (string prompts are rendered text, TRL's standard `prompt + completion`)
      is recorded as `nexus_prompt_format`, which `nexus.load` reads back.
    - Decoders' `score` layer has no bias. A head bias is folded into the final norm's bias where
      it has one (GPT-2's `ln_f`: beta += pinv(W) b, exact); otherwise (RMSNorm bodies) the logits
      are the reward minus that constant, which preferences, accuracy and best-of-N do not see:
      a warning says so, config.json records it as `nexus_reward_bias`, and `nexus.load` adds it
      back. RMs trained with `head_hidden=0` start with a zero bias, which pairwise losses keep.

    `path` must be new or an empty folder; it is written whole, then renamed.
    """
    import copy
    import os

    from transformers import AutoModelForSequenceClassification

    layer, labels = _check_exportable(rm)
    backbone = rm.backbone
    target = Path(os.path.abspath(path))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not an empty folder; export writes a new one")
    tokenizer = _export_tokenizer(backbone)
    body = copy.deepcopy(backbone.model)
    if hasattr(body, "merge_and_unload"):  # LoRA: fold the adapters into the weights
        body = body.merge_and_unload()
    body = body.base_model
    config = copy.deepcopy(body.config)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.architectures = None
    seq = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False).to(backbone.dtype)
    seq.base_model.load_state_dict(body.state_dict())
    if len(tokenizer) > seq.get_input_embeddings().num_embeddings:
        seq.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    seq.config.pad_token_id = tokenizer.pad_token_id
    if backbone.prompt_format != "chat":  # string prompts are rendered text (TRL's standard data): nexus.load reads it
        seq.config.nexus_prompt_format = backbone.prompt_format
    out, _ = _classifier(seq)
    bias = layer.bias.detach().float() if layer.bias is not None else torch.zeros(len(labels))
    with torch.no_grad():
        out.weight.copy_(layer.weight.to(out.weight.dtype))
        if out.bias is not None:
            out.bias.copy_(bias.to(out.bias.dtype))
        elif bias.abs().max() > 0 and not _fold_bias(seq.base_model, layer.weight.detach().float(), bias):
            import warnings

            seq.config.nexus_reward_bias = bias.tolist() if len(labels) > 1 else float(bias[0])
            warnings.warn(f"{type(seq).__name__}'s score layer has no bias and its final norm none to fold the head "
                          f"bias {bias.tolist()} into: its logits are the reward minus that constant (preferences, "
                          "accuracy and best-of-N choices do not see it); config.json records it as "
                          "nexus_reward_bias, which nexus.load adds back", stacklevel=3)
    _write_whole(target, lambda folder: (seq.save_pretrained(folder, safe_serialization=True),
                                         tokenizer.save_pretrained(folder)))
    return target


def _export_tokenizer(backbone):
    """The tokenizer to export: the backbone's, or a copy with its own pad token where the backbone
    pads with eos yet reads a trailing eos, so that transformers' last-non-pad pooling reads it too."""
    import copy

    tokenizer = backbone.tokenizer
    if backbone.is_encoder or not backbone.append_eos or tokenizer.pad_token_id != tokenizer.eos_token_id:
        return tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.add_special_tokens({"pad_token": EXPORT_PAD_TOKEN})
    return tokenizer


def _fold_bias(body, weight, bias) -> bool:
    """Fold the head bias 'o' into the bias of the body's final norm, so that W (h + delta) = W h + b
    with delta = pinv(W) b; False where the norm has no bias (RMSNorm) or W cannot reach b."""
    norm = next((getattr(body, n) for n in FINAL_NORMS if isinstance(getattr(body, n, None), nn.Module)), None)
    beta = getattr(norm, "bias", None)
    if not isinstance(beta, nn.Parameter):
        return False
    delta = torch.linalg.pinv(weight) @ bias
    if not torch.allclose(weight @ delta, bias, atol=1e-6, rtol=1e-5):
        return False
    beta.add_(delta.to(beta.dtype))
    return True


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
