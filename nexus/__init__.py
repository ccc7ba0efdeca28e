"""nexus: a research zoo of reward models for RLHF behind one `score()` interface."""

from __future__ import annotations

import os

from nexus.base import RewardModel, RewardOutput, read_config  # noqa: E402

__version__ = "0.1.0"


def load(path: str | os.PathLike, device: str = "cpu", *, revision: str | None = None, dtype: str | None = None,
         trust_remote_code: bool = False, prompt_format: str | None = None) -> RewardModel:
    """Load a reward model from a local directory or a hub id (the HF cache, `HF_HUB_OFFLINE`):

    - a nexus checkpoint (`save_pretrained`), dispatched on config.json's "model_type";
    - a transformers `AutoModelForSequenceClassification` checkpoint (the common RM format): one
      output gives a scalar RM, several a multi-objective RM (`nexus.interop`). `dtype` ("bf16",
      ...), `trust_remote_code` and `prompt_format` apply to these (`prompt_format="raw"`: string
      prompts are already the model's text, as TRL's standard data is `prompt + response`; None:
      what `export_hf` recorded, else "chat"); nexus checkpoints keep their saved dtype and format.
    """
    from nexus.validation import read_json_object
    from nexus.interop import is_sequence_classifier, load_hf_reward_model
    from nexus.models import get_model_class

    from nexus.backbones.hub import local_or_hub

    directory = local_or_hub(str(path), revision)
    if directory is None:
        raise FileNotFoundError(f"checkpoint directory {path} does not exist (and it is not a hub id)")
    if (directory / "config.json").is_file() and is_sequence_classifier(read_json_object(directory / "config.json")):
        return load_hf_reward_model(directory, str(path), dtype, trust_remote_code, prompt_format).to(device)
    config = read_config(directory)
    return get_model_class(config["model_type"]).from_pretrained(directory, device=device)


def remote_reward_func(url: str, **options):
    """An async TRL reward function scoring on a nexus server at `url` (`nexus.rl.remote_reward_func`)."""
    from nexus.rl import remote_reward_func as make

    return make(url, **options)


__all__ = ["RewardModel", "RewardOutput", "load", "remote_reward_func", "__version__"]
