"""ImplicitPRM: steps, token-to-step mapping, rewards against a loop-free oracle, and the three checkpoint kinds."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prime_trl import ImplicitPRM
from prime_trl.implicit_prm import (
    ProcessRewards,
    build_completion_batch,
    encode_response,
    offsets_from_ids,
    step_spans,
    sum_by_step,
    token_step_ids,
)
from prime_trl.prm import completion_logps
from tests.evaluation.helpers import PROMPT, RESPONSE

BETA = 0.05


# -- steps (pure) --------------------------------------------------------------------------------------


def _steps(text, separators=("\n\n", "[VERIFY]", "[OUTPUT]")):
    return [text[a:b] for a, b in step_spans(text, separators)]


def test_blank_lines_close_steps_and_markers_open_them():
    text = "a\n\nb\n\n\n[VERIFY] c [OUTPUT]\n\nd"
    assert _steps(text) == ["a\n\n", "b\n\n\n", "[VERIFY] c ", "[OUTPUT]\n\n", "d"]
    assert _steps("one step") == ["one step"]
    assert _steps("") == []
    assert _steps("x\ny\n", ("\n",)) == ["x\n", "y\n"]  # one step per line, as in the demo task


def test_spans_tile_the_text():
    spans = step_spans(RESPONSE)
    assert spans[0][0] == 0 and spans[-1][1] == len(RESPONSE)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_tokens_join_the_step_of_their_last_character():
    spans = [(0, 4), (4, 8)]
    # a token straddling the boundary (3, 6) joins step 1; an empty-span special token follows its predecessor
    assert token_step_ids([(0, 2), (2, 3), (3, 6), (6, 8), (8, 8)], spans) == [0, 0, 1, 1, 1]
    assert token_step_ids([(0, 0), (0, 2)], spans) == [0, 0]
    assert sum_by_step([0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 1, 1, 1], 3) == pytest.approx([0.3, 1.2, 0.0])


def test_offsets_from_ids_match_the_fast_tokenizer(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, offsets = encode_response(tokenizer, RESPONSE)
    text, decoded_offsets = offsets_from_ids(tokenizer, ids)
    assert text == RESPONSE
    assert decoded_offsets == offsets


# -- rewards ---------------------------------------------------------------------------------------------


def test_rewards_are_exactly_zero_when_prm_equals_reference(tiny_model_dir):
    prm = ImplicitPRM.from_pretrained(tiny_model_dir, tiny_model_dir, beta=BETA)
    result = prm.score(PROMPT, RESPONSE)
    assert len(result.tokens) == len(result.token_rewards) > 10
    assert all(r == 0.0 for r in result.token_rewards)
    assert all(r == 0.0 for r in result.step_rewards)


def _oracle_token_rewards(prm_dir, ref_dir, prompt_text, response_ids, tokenizer):
    """beta * (log pi_prm - log pi_ref) of each response token, one unpadded row, computed by hand."""
    ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"] + response_ids
    x = torch.tensor([ids])
    logps = []
    for path in (prm_dir, ref_dir):
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        with torch.no_grad():
            logits = model(x).logits[0, :-1]  # position i predicts token i+1
        lp = torch.log_softmax(logits.float(), -1).gather(-1, x[0, 1:, None])[:, 0]
        logps.append(lp[-len(response_ids):])
    return BETA * (logps[0] - logps[1])


def test_token_and_step_rewards_match_the_definition(tiny_model_dir, perturbed_prm_dir):
    prm = ImplicitPRM.from_pretrained(perturbed_prm_dir, tiny_model_dir, beta=BETA)
    result = prm.score(PROMPT, RESPONSE)
    ids, _ = encode_response(prm.tokenizer, RESPONSE)
    expected = _oracle_token_rewards(perturbed_prm_dir, tiny_model_dir, prm.render_prompt(PROMPT), ids, prm.tokenizer)
    assert torch.tensor(result.token_rewards) == pytest.approx(expected, abs=1e-5)
    assert any(abs(r) > 1e-4 for r in result.token_rewards)
    assert "".join(result.tokens) == RESPONSE and "".join(result.steps) == RESPONSE
    assert result.steps == ["Step 1: 7 * 6 = 42.\n\n", "[VERIFY]\n\n", "42 - 2 = 40.\n\n", "The answer is \\boxed{40}."]
    # steps partition the tokens: their rewards sum to the sequence reward
    assert sum(result.step_rewards) == pytest.approx(result.sequence_reward, abs=1e-6)
    for k, step_reward in enumerate(result.step_rewards):
        assert step_reward == pytest.approx(sum(r for r, s in zip(result.token_rewards, result.token_steps) if s == k))


def test_batched_scoring_equals_one_at_a_time(tiny_model_dir, perturbed_prm_dir):
    prm = ImplicitPRM.from_pretrained(perturbed_prm_dir, tiny_model_dir, beta=BETA)
    pairs = [(PROMPT, RESPONSE), ("raw prompt: ", "x = 1"), (PROMPT + [{"role": "assistant", "content": "hi"}], "")]
    batched = prm.score_batch(pairs, batch_size=3, progress=False)
    for (prompt, response), got in zip(pairs, batched):
        alone = prm.score(prompt, response)
        assert got.token_rewards == pytest.approx(alone.token_rewards, abs=1e-5)
    assert batched[2].tokens == [] and batched[2].steps == [""] and batched[2].sequence_reward == 0.0


def test_chat_prompts_go_through_the_template(tiny_model_dir, perturbed_prm_dir):
    prm = ImplicitPRM.from_pretrained(perturbed_prm_dir, tiny_model_dir, beta=BETA)
    rendered = prm.tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert prm.render_prompt(PROMPT) == rendered
    assert prm.score(PROMPT, RESPONSE).token_rewards == pytest.approx(prm.score(rendered, RESPONSE).token_rewards)


def test_full_model_needs_a_reference(perturbed_prm_dir):
    with pytest.raises(ValueError, match="ref_path"):
        ImplicitPRM.from_pretrained(perturbed_prm_dir)


# -- the adapter placement ---------------------------------------------------------------------------------


def test_adapter_prm_uses_the_base_with_adapters_off_as_reference(tiny_model_dir, prm_adapter_output_dir):
    prm = ImplicitPRM.from_pretrained(prm_adapter_output_dir, beta=BETA)  # resolves <output_dir>/prm
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompt_ids = prm.tokenizer(prm.render_prompt(PROMPT), add_special_tokens=False)["input_ids"]
    ids, _ = encode_response(prm.tokenizer, RESPONSE)
    batch = build_completion_batch([prompt_ids], [ids], prm.tokenizer.pad_token_id)
    with torch.no_grad():
        with prm.placement.ref_scope() as module:
            ref = completion_logps(module, batch)
        with prm.placement.prm_scope() as module:
            with_adapter = completion_logps(module, batch)
        expected_ref = completion_logps(base, batch)
    assert ref == pytest.approx(expected_ref, abs=1e-6)
    assert (with_adapter - ref).abs().max() > 1e-4  # the adapter does change the model
    result = prm.score(PROMPT, RESPONSE)
    assert torch.tensor(result.token_rewards) == pytest.approx(BETA * (with_adapter - ref)[0], abs=1e-5)


def test_process_rewards_to_dict_round_trips():
    r = ProcessRewards.build("p", "a\n\nb", ["a", "\n\n", "b"], [(0, 1), (1, 3), (3, 4)], [0.1, 0.2, -0.4])
    d = r.to_dict()
    assert d["steps"] == ["a\n\n", "b"] and d["step_rewards"] == pytest.approx([0.3, -0.4])
    assert d["sequence_reward"] == pytest.approx(-0.1)
