from setuptools import find_packages, setup

# Versions are the ones this project is tested with: PRIMETrainer overrides GRPOTrainer's
# internal hooks, so TRL is held to the minor release whose internals we checked.
install_requires = [
    "torch>=2.4",
    "trl>=1.16,<1.17",
    "transformers>=5.23,<6",
    "peft>=0.21,<0.22",
    "accelerate>=1.15,<2",
    "datasets>=5.2,<6",
    "math-verify>=0.9,<0.10",
    "matplotlib>=3.8",
    "tqdm",
    "pyyaml",
]

extras = {
    # deepspeed: the tests run ZeRO-2/3 on CPU processes (gloo); gguf: transformers needs it to read the GGUF
    # checkpoint that tests/real convert into a real pretrained model
    "dev": ["pytest>=8", "pytest-timeout", "nbformat", "nbclient", "ipykernel", "evaluate>=0.4", "deepspeed>=0.17",
            "gguf>=0.10"],
    "quant": ["bitsandbytes>=0.46.1"],  # the floor transformers 5.23 enforces
    "notebooks": ["jupyter", "ipykernel", "ipywidgets"],
    "vllm": ["vllm"],
    "deepspeed": ["deepspeed"],
}

setup(
    name="prime-trl",
    version="0.1.0",
    description="PRIME (Process Reinforcement through Implicit Rewards) for Hugging Face TRL",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["prime_trl", "prime_trl.*"]),
    package_data={"prime_trl": ["sample_data/*.jsonl", "sample_data/*.json"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
    entry_points={"console_scripts": ["prime-trl=prime_trl.cli:main"]},
)
