"""See where a solution went wrong: responses coloured by their implicit process rewards.

- `render_html(results)`: one page; every response shown twice, step by step and token by token, each piece
  coloured by its reward (green > 0, red < 0, intensity |r| / max |r| of that response) with the value on hover.
- `render_png(results, path)`: per response, the step rewards as bars and the running sum q_t = sum_{s<=t} r_s
  (the PRM's Q-value, paper App. C.1) over tokens, with step boundaries marked: a drop shows where it went wrong.
- `ProcessRewardVisualizer`: a `TrainerCallback` that writes both every `every_n_steps` for a few fixed prompts'
  completions from the current policy, scored by the trainer's current PRM.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence

from transformers import TrainerCallback

from prime_trl.generation import generate_ids, pad_token_id
from prime_trl.implicit_prm import (
    DEFAULT_STEP_SEPARATORS,
    ProcessRewards,
    batch_to,
    build_completion_batch,
    offsets_from_ids,
)

logger = logging.getLogger(__name__)

_POSITIVE, _NEGATIVE = (26, 150, 65), (215, 48, 39)

_CSS = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
.response { border: 1px solid #ccc; border-radius: 6px; padding: 1em; margin-bottom: 2em; }
.text { font-family: monospace; white-space: pre-wrap; line-height: 1.7; }
.step { display: block; border-left: 4px solid #999; padding: 2px 6px; margin: 2px 0; }
.step .r { float: right; font-size: 80%; color: #333; }
.tok { border-radius: 2px; }
.meta { color: #555; font-size: 90%; }
.legend span { padding: 2px 8px; margin-right: 4px; font-family: monospace; }
"""


def reward_color(reward: float, scale: float) -> str:
    """CSS rgba: green for r > 0, red for r < 0, opacity 0.8 |r| / scale (0 is transparent; text stays legible)."""
    alpha = 0.0 if scale <= 0 else 0.8 * min(1.0, abs(reward) / scale)
    r, g, b = _POSITIVE if reward >= 0 else _NEGATIVE
    return f"rgba({r},{g},{b},{alpha:.3f})"


def _visible(text: str) -> str:
    """Escaped text with newlines shown as a mark before the line break."""
    return html.escape(text).replace("\n", "\u21b5\n")


def _response_html(result: ProcessRewards, title: str) -> str:
    token_scale = max((abs(r) for r in result.token_rewards), default=0.0)
    step_scale = max((abs(r) for r in result.step_rewards), default=0.0)
    steps = "".join(
        f'<span class="step" style="background:{reward_color(r, step_scale)}" title="step {i}: r = {r:+.4f}">'
        f'<span class="r">{r:+.4f}</span>{_visible(text)}</span>'
        for i, (text, r) in enumerate(zip(result.steps, result.step_rewards))
    )
    tokens = "".join(
        f'<span class="tok" style="background:{reward_color(r, token_scale)}" title="{html.escape(repr(t))}: '
        f'r = {r:+.5f} (step {s})">{_visible(t)}</span>'
        for t, r, s in zip(result.tokens, result.token_rewards, result.token_steps)
    )
    return (
        f'<div class="response"><h2>{html.escape(title)}</h2>'
        f'<p class="meta">sequence reward r(y) = {result.sequence_reward:+.4f} &middot; {len(result.steps)} steps '
        f"&middot; {len(result.tokens)} tokens</p>"
        f"<details><summary>prompt</summary><div class=\"text\">{_visible(result.prompt)}</div></details>"
        f'<h3>steps</h3><div class="text">{steps}</div>'
        f'<h3>tokens</h3><div class="text">{tokens}</div></div>'
    )


def render_html(results: Sequence[ProcessRewards], titles: Sequence[str] | None = None, heading: str = "") -> str:
    """A self-contained HTML page showing each result's step and token rewards."""
    titles = titles or [f"response {i}" for i in range(len(results))]
    legend = (
        '<p class="legend">colour = process reward: '
        f'<span style="background:{reward_color(-1, 1)}">negative</span>'
        f'<span style="background:{reward_color(0, 1)}; border:1px solid #ccc">0</span>'
        f'<span style="background:{reward_color(1, 1)}">positive</span>'
        " (scaled per response; hover for values)</p>"
    )
    body = "".join(_response_html(r, t) for r, t in zip(results, titles))
    return (
        f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(heading or 'process rewards')}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(heading or 'Implicit process rewards')}</h1>"
        f"{legend}{body}</body></html>"
    )


def render_png(results: Sequence[ProcessRewards], path: str, titles: Sequence[str] | None = None,
               max_label_chars: int = 40) -> str:
    """Step-reward bars and the running token-reward sum q_t of each result, one row per result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    titles = titles or [f"response {i}" for i in range(len(results))]
    n = max(1, len(results))
    height = sum(max(2.5, 1.2 + 0.3 * len(r.steps)) for r in results) or 2.5
    fig, axes = plt.subplots(n, 2, figsize=(13, height), squeeze=False)
    for (ax_steps, ax_q), result, title in zip(axes, results, titles):
        rewards = np.asarray(result.step_rewards, dtype=float)
        scale = float(np.abs(rewards).max()) if rewards.size else 0.0
        # opacity 0.25 .. 1 with |r| / max |r|, so even a near-zero step stays visible
        colors = [(*(c / 255 for c in (_POSITIVE if r >= 0 else _NEGATIVE)), 0.25 + 0.75 * abs(r) / (scale or 1))
                  for r in rewards]
        y = np.arange(len(rewards))
        ax_steps.barh(y, rewards, color=colors, edgecolor="black", linewidth=0.3)
        labels = [s.strip().replace("\n", " ")[:max_label_chars] or "(blank)" for s in result.steps]
        ax_steps.set_yticks(y, labels, fontsize=7)
        ax_steps.invert_yaxis()
        ax_steps.axvline(0, color="black", linewidth=0.5)
        ax_steps.set_xlabel("step reward")
        ax_steps.set_title(f"{title}: r(y) = {result.sequence_reward:+.3f}", fontsize=9)
        # q_t = sum_{s<=t} r_s, the implicit Q-value after each token
        q = np.cumsum(np.asarray(result.token_rewards, dtype=float))
        ax_q.plot(np.arange(len(q)), q, color="black", linewidth=1)
        ax_q.axhline(0, color="grey", linewidth=0.5)
        for t in range(1, len(result.token_steps)):
            if result.token_steps[t] != result.token_steps[t - 1]:
                ax_q.axvline(t - 0.5, color="tab:blue", linewidth=0.5, linestyle=":")
        ax_q.set_xlabel("token")
        ax_q.set_ylabel("q_t = sum of r up to t")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_visualization(results: Sequence[ProcessRewards], output_dir: str, name: str = "process_rewards",
                        titles: Sequence[str] | None = None, heading: str = "", png: bool = True) -> dict[str, str]:
    """Write `<name>.html` (and `<name>.png`) under `output_dir`; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {"html": os.path.join(output_dir, f"{name}.html")}
    with open(paths["html"], "w", encoding="utf-8") as f:
        f.write(render_html(results, titles, heading))
    if png and results:
        paths["png"] = render_png(results, os.path.join(output_dir, f"{name}.png"), titles)
    return paths


class ProcessRewardVisualizer(TrainerCallback):
    """Every `every_n_steps`, colour a few completions of the current policy by the current PRM's rewards.

    Self-contained on `PRIMETrainer`'s public state: it generates from `trainer.model` for fixed prompts, and
    scores the completions (EOS included, as in training) with `trainer.prm.reference_logps` / `trainer.prm.score`.
    Files go to `<output_dir>/process_rewards/step-<N>.html` (and `.png`).

        trainer = PRIMETrainer(...)
        trainer.add_callback(ProcessRewardVisualizer(trainer, every_n_steps=50))

    Runs on the main process only, so it suits one process or DDP; not sharded models (ZeRO-3/FSDP), whose
    generate needs every rank.

    Args:
        trainer: a `PRIMETrainer`.
        prompts: prompts (message lists or strings); default the first `num_samples` rows of the train dataset.
        every_n_steps: write every N optimizer steps (and at the end of training).
        num_samples: how many prompts when `prompts` is None.
        max_new_tokens: default `trainer.args.max_completion_length`.
        temperature: 0 is greedy (the same prompts then show how one solution changes), > 0 samples.
        output_dir: default `<trainer.args.output_dir>/process_rewards`.
    """

    def __init__(self, trainer, prompts: Sequence | None = None, every_n_steps: int = 50, num_samples: int = 4,
                 max_new_tokens: int | None = None, temperature: float = 0.0, output_dir: str | None = None,
                 step_separators: Sequence[str] = DEFAULT_STEP_SEPARATORS, png: bool = True):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.trainer = trainer
        if prompts is None:
            prompts = [trainer.train_dataset[i]["prompt"] for i in range(min(num_samples, len(trainer.train_dataset)))]
        self.prompts = list(prompts)
        self.every_n_steps = every_n_steps
        self.max_new_tokens = max_new_tokens or trainer.args.max_completion_length
        self.temperature = temperature
        self.output_dir = output_dir or os.path.join(trainer.args.output_dir, "process_rewards")
        self.step_separators = tuple(step_separators)
        self.png = png
        self.written: list[str] = []

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every_n_steps == 0 and state.is_world_process_zero:
            self.write(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if state.global_step % self.every_n_steps != 0 and state.is_world_process_zero:
            self.write(state.global_step)

    def completions(self) -> tuple[list[list[int]], list[list[int]]]:
        """Prompt ids and completion ids (through the first EOS, a scored token in training) from the policy."""
        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        return generate_ids(model, trainer.processing_class, self.prompts, self.max_new_tokens, self.temperature)

    def score(self) -> list[ProcessRewards]:
        """The current PRM's process rewards of the current policy's completions."""
        trainer = self.trainer
        tokenizer = trainer.processing_class
        prompt_ids, completion_ids = self.completions()
        batch = build_completion_batch(prompt_ids, completion_ids, pad_token_id(tokenizer))
        batch = batch_to(batch, trainer.accelerator.device)
        # the reference of training, `prm_ref_type`'s: the frozen start, or the policy itself
        rewards = trainer.prm.score(batch, trainer.prm.reference_logps(batch)).cpu()  # (N, T)
        results = []
        for p_ids, c_ids, row in zip(prompt_ids, completion_ids, rewards):
            text, offsets = offsets_from_ids(tokenizer, c_ids)
            tokens = [text[a:b] for a, b in offsets]
            results.append(ProcessRewards.build(tokenizer.decode(p_ids), text, tokens, offsets,
                                                row[: len(c_ids)].tolist(), self.step_separators))
        return results

    def write(self, step: int) -> dict[str, str]:
        results = self.score()
        paths = write_visualization(results, self.output_dir, name=f"step-{step}",
                                    titles=[f"prompt {i}, step {step}" for i in range(len(results))],
                                    heading=f"Process rewards at step {step}", png=self.png)
        self.written.append(paths["html"])
        logger.info("process rewards of %d completions written to %s", len(results), paths["html"])
        return paths
