"""`prime-trl train --config CONFIG.yaml [--field value ...]`: train a policy with PRIME.

The conventions are those of TRL's `trl/scripts/grpo.py`. One YAML file holds the fields of
`PRIMEScriptArguments` (data and rewards), `PRIMEConfig` (training) and `ModelConfig` (model, LoRA,
quantization). A `--field value` flag on the command line overrides the YAML, and a top-level
`env:` mapping sets environment variables. Unlike `trl grpo`, an unknown key is an error here:
nothing is forwarded to a launcher. Launch several processes with accelerate, unchanged:

    prime-trl train --config configs/gsm8k_qwen2.5_math_1.5b.yaml --output_dir out
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
        -m prime_trl.cli train --config configs/paper_eurus_7b.yaml

`accelerate launch /path/to/bin/prime-trl train ...` works too when that path is the console
script itself (`$(which prime-trl)` under pyenv is a shell shim, which accelerate cannot run).

A user error (missing config file, unknown key, unreadable dataset, unknown reward function)
prints one line, `prime-trl train: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field

from trl import ModelConfig, ScriptArguments, TrlParser

from prime_trl.config import PRIMEConfig
from prime_trl.data import FILE_BUILDERS, SCHEMAS

PROG = "prime-trl train"
SCHEMA_CHOICES = ("auto", *SCHEMAS)
LOCAL_SUFFIXES = tuple(FILE_BUILDERS)  # what prime_trl.data loads as a single file


class ConfigError(Exception):
    """A mistake in the command line, the YAML or the data it points to: reported in one line."""


@dataclass
class PRIMEScriptArguments(ScriptArguments):
    """Data and reward fields of `prime-trl train`; the dataset fields of `ScriptArguments` apply.

    `dataset_name` is a hub id (e.g. "PRIME-RL/Eurus-2-RL-Data") or a local .jsonl/.json/.parquet/
    .csv file or directory; `dataset_train_split` picks the split of a hub id or directory.
    """

    dataset_schema: str = field(
        default="auto",
        metadata={"help": "Row format: 'eurus' (Eurus-2-RL-Data), 'gsm8k' (question/answer), 'math' (problem/"
                  "solution with \\boxed{}), or 'auto' to pick it from the columns.", "choices": list(SCHEMA_CHOICES)},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["outcome"],
        metadata={"help": "Outcome verifiers, each a name in prime_trl.verifiers.REWARD_FUNCS ('math', 'code', "
                  "'outcome' = route by the row's ability) or a dotted import path such as "
                  "'my_rewards.exact_match' (the working directory is importable). PRIME needs their weighted "
                  "sum in [0, 1]: it is the PRM's cross-entropy label."},
    )
    add_prompt_suffix: bool = field(
        default=True,
        metadata={"help": "Append the paper's instruction ('Present the answer in LaTex format: \\boxed{Your "
                  "answer}' for math, the code-block request for code) to the last user message, unless present."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "None keeps the rows' system messages; a string replaces them ('' removes them)."},
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "Prompts longer than this many tokens (chat template included) are bad rows. TRL 1.16 "
                  "no longer truncates prompts, so this is where the paper's 1024 is enforced."},
    )
    skip_bad_rows: bool = field(
        default=False,
        metadata={"help": "Drop rows that cannot become prompts (missing ground truth, prompt too long, ...) and "
                  "log how many, instead of stopping at the first one."},
    )


def make_parser() -> TrlParser:
    return TrlParser((PRIMEScriptArguments, PRIMEConfig, ModelConfig), prog=PROG)


def parse_args(argv: list[str]) -> tuple[PRIMEScriptArguments, PRIMEConfig, ModelConfig]:
    """Parse `--config FILE` plus flags; raises `ConfigError` naming the file or the unknown keys."""
    parser = make_parser()
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise ConfigError("--config needs a YAML file path")
        _check_config_file(argv[index + 1], known={action.dest for action in parser._actions})
    try:
        script_args, training_args, model_args, _, cli_unknown = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
    except ValueError as err:  # the __post_init__ checks of PRIMEConfig / GRPOConfig / TrainingArguments
        raise ConfigError(str(err)) from err
    if cli_unknown:
        raise ConfigError(f"unknown command-line arguments: {cli_unknown} (see `{PROG} --help`)")
    if not model_args.model_name_or_path:
        raise ConfigError("model_name_or_path is not set (in the YAML or as --model_name_or_path)")
    if not script_args.dataset_name:
        raise ConfigError("dataset_name is not set (a hub id or a local .jsonl/.json/.parquet/.csv file or directory)")
    if script_args.dataset_streaming:
        raise ConfigError("dataset_streaming is not supported: prompts are normalised in memory")
    return script_args, training_args, model_args


def _check_config_file(path: str, known: set[str]) -> None:
    """The file exists, is a YAML mapping, and every key is a field (or `env:`), checked before any
    dataclass is built, so a misspelt key is reported rather than an error it causes."""
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {os.path.abspath(path)}")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} must be a YAML mapping of field: value")
    unknown = sorted(set(config) - known - {"env"})
    if unknown:
        raise ConfigError(f"unknown keys in config file {path}: {unknown} (see `{PROG} --help` for the fields)")


def resolve_reward_funcs(names: list[str]) -> list:
    """Names from `REWARD_FUNCS`, or dotted import paths resolved from the working directory."""
    from prime_trl.verifiers import REWARD_FUNCS

    funcs = []
    for name in names:
        if name in REWARD_FUNCS:
            funcs.append(REWARD_FUNCS[name])
            continue
        if "." not in name:
            raise ConfigError(
                f"unknown reward function {name!r}: use one of {sorted(REWARD_FUNCS)} or a dotted import path "
                "such as 'my_rewards.exact_match'"
            )
        module_path, attr = name.rsplit(".", 1)
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as trl/scripts/grpo.py does, so a local rewards.py is importable
        try:
            func = getattr(importlib.import_module(module_path), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"cannot import reward function {name!r}: {err}") from err
        if not callable(func):
            raise ConfigError(f"reward function {name!r} is a {type(func).__name__}, not a callable")
        funcs.append(func)
    if not funcs:
        raise ConfigError(f"reward_funcs is empty: PRIME needs an outcome verifier (one of {sorted(REWARD_FUNCS)})")
    return funcs


def load_prompts(script_args: PRIMEScriptArguments, split: str, tokenizer=None):
    """The dataset as PRIME prompt rows (`prime_trl.data`); raises `ConfigError` naming the path and the reason."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetsError

    from prime_trl.data import load_prime_dataset, normalize_dataset

    name = os.path.expanduser(script_args.dataset_name)
    looks_local = os.path.isabs(name) or name.startswith(".") or name.lower().endswith(LOCAL_SUFFIXES)
    if looks_local and not os.path.exists(name):
        raise ConfigError(f"cannot read dataset {os.path.abspath(name)}: no such file or directory")
    options = dict(
        schema=script_args.dataset_schema,
        add_suffix=script_args.add_prompt_suffix,
        system_prompt=script_args.system_prompt,
        tokenizer=tokenizer,
        max_prompt_length=script_args.max_prompt_length,
        on_bad_row="skip" if script_args.skip_bad_rows else "error",
    )
    try:
        if script_args.dataset_config:  # a hub config such as openai/gsm8k's "main"; load_prime_dataset takes none
            raw = load_dataset(name, script_args.dataset_config, split=split)
            dataset, report = normalize_dataset(raw, **options)
        else:
            dataset, report = load_prime_dataset(name, split=split, return_report=True, **options)
    except (OSError, ValueError, DatasetsError) as err:  # BadRowError is a ValueError naming the row and field
        raise ConfigError(f"cannot read dataset {name} (split {split!r}): {_root_cause(err)}") from err
    if report.num_kept == 0:
        raise ConfigError(f"dataset {name} (split {split!r}) has no usable rows: skipped {report.skipped}")
    return dataset, report


def _root_cause(err: BaseException) -> str:
    """`datasets` wraps a parse error in DatasetGenerationError("An error occurred..."): report the cause too."""
    causes = [err]
    while causes[-1].__cause__ is not None and len(causes) < 5:
        causes.append(causes[-1].__cause__)
    return " <- ".join(f"{type(e).__name__}: {e}" for e in causes)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        script_args, training_args, model_args = parse_args(argv)
        reward_funcs = resolve_reward_funcs(script_args.reward_funcs)
        return train(script_args, training_args, model_args, reward_funcs)
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


def train(script_args: PRIMEScriptArguments, training_args: PRIMEConfig, model_args: ModelConfig, reward_funcs) -> int:
    from transformers import AutoTokenizer
    from trl import get_peft_config, get_quantization_config

    from prime_trl.trainer import PRIMETrainer

    # Model loading options, as trl/scripts/grpo.py builds them; the separate PRM is loaded with the same ones.
    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    tokenizer = None
    if script_args.max_prompt_length is not None:  # only needed to count prompt tokens
        tokenizer = AutoTokenizer.from_pretrained(
            model_args.model_name_or_path, revision=model_args.model_revision,
            trust_remote_code=training_args.trust_remote_code,
        )  # fmt: skip
    with training_args.main_process_first(desc="loading the dataset"):  # rank 0 downloads, the others read the cache
        train_dataset, report = load_prompts(script_args, script_args.dataset_train_split, tokenizer)
        eval_dataset = None
        if training_args.eval_strategy != "no":
            eval_dataset, _ = load_prompts(script_args, script_args.dataset_test_split, tokenizer)
    if training_args.process_index == 0:
        print(f"{PROG}: {report.num_kept} of {report.num_rows} rows from {script_args.dataset_name}"
              + (f", skipped {report.skipped}" if report.num_skipped else ""))  # fmt: skip

    trainer = PRIMETrainer(
        model=model_args.model_name_or_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    # The policy (or its adapters) to output_dir; a separate PRM to output_dir/prm, an adapter PRM is in the PEFT save.
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"{PROG}: model and PRM saved to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    trainer.end()  # finish the trackers and destroy the process group
    return 0


if __name__ == "__main__":
    sys.exit(main())
