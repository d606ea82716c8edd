import math

import pytest
import torch
from torch.testing import assert_close

from prime_trl.core import discounted_returns, masked_whiten, rloo_returns, rloo_returns_paper_eq5

NAN = float("nan")


# --- slow, obvious oracles ----------------------------------------------------------------------


def _valid(mask_row):
    return [t for t, m in enumerate(mask_row) if m]


def loop_discounted(rewards_row, mask_row, gamma):
    """G_t = sum over valid s >= t of gamma^(s - t) r_s, 0 on padding."""
    valid = _valid(mask_row)
    return [sum(gamma ** (s - t) * rewards_row[s] for s in valid if s >= t) if m else 0.0
            for t, m in enumerate(mask_row)]


def loop_rloo_returns(process, scores, mask, G, process_coef=1.0, outcome_coef=1.0, gamma_p=1.0, gamma_o=1.0):
    """The authors' RLOO written row by row: each source is centred, discounted, then summed.

    A group's n counts its non-empty rows; with n <= 1 the baseline is 0.
    """
    mask = mask.tolist()
    B, T = len(mask), len(mask[0])
    process = process.tolist() if process is not None else None
    scores = scores.tolist() if scores is not None else None
    out = [[0.0] * T for _ in range(B)]
    for start in range(0, B, G):
        rows = [i for i in range(start, start + G) if any(mask[i])]
        n = len(rows)
        if process_coef:
            means = {i: sum(process[i][t] for t in _valid(mask[i])) / len(_valid(mask[i])) for i in rows}
            for i in rows:
                centred = [0.0] * T
                for t in _valid(mask[i]):
                    if n > 1:
                        centred[t] = process[i][t] * n / (n - 1) - sum(means.values()) / (n - 1)
                    else:
                        centred[t] = process[i][t]
                returns = loop_discounted(centred, mask[i], gamma_p)
                out[i] = [o + process_coef * r for o, r in zip(out[i], returns)]
        if outcome_coef:
            for i in rows:
                others = [scores[j] for j in rows if j != i]
                advantage = scores[i] - sum(others) / len(others) if others else scores[i]
                centred = [0.0] * T
                centred[_valid(mask[i])[-1]] = advantage
                returns = loop_discounted(centred, mask[i], gamma_o)
                out[i] = [o + outcome_coef * r for o, r in zip(out[i], returns)]
    return torch.tensor(out)


def loop_paper_eq5(process, scores, mask, G, gamma=1.0):
    """Eq. 5: sum_{s>=t} gamma^(s-t) (r_s - mean_{j!=i} m_j) + (r_o^i - mean_{j!=i} r_o^j)."""
    mask, process, scores = mask.tolist(), process.tolist(), scores.tolist()
    B, T = len(mask), len(mask[0])
    out = [[0.0] * T for _ in range(B)]
    for start in range(0, B, G):
        rows = [i for i in range(start, start + G) if any(mask[i])]
        means = {i: sum(process[i][t] for t in _valid(mask[i])) / len(_valid(mask[i])) for i in rows}
        for i in rows:
            others = [j for j in rows if j != i]
            baseline = sum(means[j] for j in others) / len(others) if others else 0.0
            outcome = scores[i] - sum(scores[j] for j in others) / len(others) if others else scores[i]
            centred = [process[i][t] - baseline if m else 0.0 for t, m in enumerate(mask[i])]
            returns = loop_discounted(centred, mask[i], gamma)
            out[i] = [r + outcome if m else 0.0 for r, m in zip(returns, mask[i])]
    return torch.tensor(out)


def loop_whiten(values, mask, eps=1e-8):
    xs = [v for row, m_row in zip(values.tolist(), mask.tolist()) for v, m in zip(row, m_row) if m]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return torch.tensor(
        [[(v - mean) / math.sqrt(var + eps) if m else 0.0 for v, m in zip(row, m_row)]
         for row, m_row in zip(values.tolist(), mask.tolist())]
    )


# --- discounted_returns -------------------------------------------------------------------------


def test_discounted_returns_hand_computed():
    rewards = torch.tensor([[1.0, 2.0, 4.0], [1.0, 1.0, NAN]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # gamma = 1: suffix sums (7, 6, 4) and (2, 1)
    assert_close(discounted_returns(rewards, mask), torch.tensor([[7.0, 6.0, 4.0], [2.0, 1.0, 0.0]]))
    # gamma = 0.5: G_2 = 4; G_1 = 2 + 0.5 * 4 = 4; G_0 = 1 + 0.5 * 4 = 3; row 1: (1 + 0.5, 1)
    assert_close(discounted_returns(rewards, mask, gamma=0.5), torch.tensor([[3.0, 4.0, 4.0], [1.5, 1.0, 0.0]]))


@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.0])
def test_discounted_returns_matches_loop(generator, make_mask, with_padding_garbage, gamma):
    mask = make_mask(5, 8, empty_rows=True)
    rewards = with_padding_garbage(torch.randn(5, 8, generator=generator), mask)
    expected = torch.tensor([loop_discounted(r, m, gamma) for r, m in zip(rewards.tolist(), mask.tolist())])
    assert_close(discounted_returns(rewards, mask, gamma), expected)


# --- rloo_returns -------------------------------------------------------------------------------

# One prompt, G = 3, T = 3, right padding (NaN where padded):
#   r_0 = (1, 2, 3)  m_0 = 2      r_o = 1
#   r_1 = (4, 0, -)  m_1 = 2      r_o = 0
#   r_2 = (3, -, -)  m_2 = 3      r_o = 0.5
HAND_PROCESS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, NAN], [3.0, NAN, NAN]])
HAND_SCORES = torch.tensor([1.0, 0.0, 0.5])
HAND_MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])


def test_rloo_returns_process_only_hand_computed():
    # R'_t = r_t * 3/2 - (2 + 2 + 3)/2 = 1.5 r_t - 3.5
    #   row 0: (-2, -0.5, 1)  -> suffix sums (-1.5, 0.5, 1)
    #   row 1: (2.5, -3.5)    -> (-1, -3.5)
    #   row 2: (1)            -> (1)
    expected = torch.tensor([[-1.5, 0.5, 1.0], [-1.0, -3.5, 0.0], [1.0, 0.0, 0.0]])
    assert_close(rloo_returns(HAND_PROCESS, None, HAND_MASK, 3, outcome_coef=0.0), expected)


def test_rloo_returns_outcome_only_hand_computed():
    # leave-one-out on the last token: 1 - (0 + 0.5)/2 = 0.75; 0 - (1 + 0.5)/2 = -0.75; 0.5 - (1 + 0)/2 = 0
    # gamma = 1 carries it back to every earlier token
    expected = torch.tensor([[0.75, 0.75, 0.75], [-0.75, -0.75, 0.0], [0.0, 0.0, 0.0]])
    assert_close(rloo_returns(None, HAND_SCORES, HAND_MASK, 3, process_coef=0.0), expected)
    # gamma_outcome = 0.5: row 0 (0.75/4, 0.75/2, 0.75); row 1 (-0.75/2, -0.75)
    expected = torch.tensor([[0.1875, 0.375, 0.75], [-0.375, -0.75, 0.0], [0.0, 0.0, 0.0]])
    assert_close(rloo_returns(None, HAND_SCORES, HAND_MASK, 3, process_coef=0.0, gamma_outcome=0.5), expected)


def test_rloo_returns_both_sources_with_coefficients():
    # 2 * process returns (above) + 3 * outcome returns (above)
    process = torch.tensor([[-1.5, 0.5, 1.0], [-1.0, -3.5, 0.0], [1.0, 0.0, 0.0]])
    outcome = torch.tensor([[0.75, 0.75, 0.75], [-0.75, -0.75, 0.0], [0.0, 0.0, 0.0]])
    result = rloo_returns(HAND_PROCESS, HAND_SCORES, HAND_MASK, 3, process_coef=2.0, outcome_coef=3.0)
    assert_close(result, 2 * process + 3 * outcome)


def test_rloo_returns_group_of_one_has_zero_baseline():
    # G = 1: no other sample, baseline 0, so R' = R: process suffix sums plus the score on every token
    process = torch.tensor([[1.0, 2.0], [3.0, NAN]])
    mask = torch.tensor([[1, 1], [1, 0]])
    scores = torch.tensor([1.0, 0.0])
    # row 0: (1 + 2 + 1, 2 + 1) = (4, 3); row 1: (3 + 0, 0)
    assert_close(rloo_returns(process, scores, mask, 1), torch.tensor([[4.0, 3.0], [3.0, 0.0]]))


def test_rloo_returns_empty_row_leaves_the_group():
    # G = 3, row 2 masked out (its NaN score is not read): the group is rows 0 and 1, n = 2
    process = torch.tensor([[1.0, 3.0], [2.0, NAN], [NAN, NAN]])
    mask = torch.tensor([[1, 1], [1, 0], [0, 0]])
    scores = torch.tensor([1.0, 0.0, NAN])
    # m = (2, 2); R'_t = 2 r_t - 4: row 0 (-2, 2) -> (0, 2); row 1 (0) -> (0)
    # outcome: 1 - 0 = 1 on row 0, 0 - 1 = -1 on row 1
    expected = torch.tensor([[1.0, 3.0], [-1.0, 0.0], [0.0, 0.0]])
    assert_close(rloo_returns(process, scores, mask, 3), expected)


def test_rloo_returns_all_equal_outcomes_give_no_outcome_signal():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]])
    for score in (0.0, 0.5, 1.0):
        returns = rloo_returns(None, torch.full((4,), score), mask, 4, process_coef=0.0)
        assert_close(returns, torch.zeros(4, 3))


def test_rloo_returns_identical_rows_sum_to_zero_at_the_first_token():
    # identical rows: the leave-one-out baseline equals each row's own mean, so the t = 0 return
    # sum_t (r_t - m) * G/(G-1) vanishes; later positions need not (the code's per-token form)
    process = torch.tensor([[1.0, 2.0, 6.0]]).repeat(3, 1)
    returns = rloo_returns(process, torch.ones(3), torch.ones(3, 3), 3)
    # R'_t = 1.5 r_t - 1.5 * 3 = (-3, -1.5, 4.5): suffix sums (0, 3, 4.5)
    assert_close(returns, torch.tensor([[0.0, 3.0, 4.5]]).repeat(3, 1))


@pytest.mark.parametrize("num_generations", [1, 2, 4])
@pytest.mark.parametrize("gammas", [(1.0, 1.0), (0.9, 0.5)])
@pytest.mark.parametrize("empty_rows", [False, True])
@pytest.mark.parametrize("coefs", [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0)])
def test_rloo_returns_matches_loop(
    generator, make_mask, with_padding_garbage, num_generations, gammas, empty_rows, coefs
):
    B, T = 4 * num_generations, 6
    mask = make_mask(B, T, empty_rows=empty_rows)
    process = with_padding_garbage(torch.randn(B, T, generator=generator), mask)
    scores = torch.rand(B, generator=generator)
    scores[~mask.bool().any(-1)] = NAN
    kwargs = dict(process_coef=coefs[0], outcome_coef=coefs[1], gamma_process=gammas[0], gamma_outcome=gammas[1])
    expected = loop_rloo_returns(process, scores, mask, num_generations, *coefs, *gammas)
    result = rloo_returns(process, scores, mask, num_generations, **kwargs)
    assert_close(result, expected)
    assert torch.isfinite(result).all()


def test_rloo_returns_rejects_ragged_groups():
    with pytest.raises(ValueError, match="num_generations"):
        rloo_returns(torch.zeros(5, 2), torch.zeros(5), torch.ones(5, 2), 2)


# --- rloo_returns_paper_eq5 ---------------------------------------------------------------------


def test_paper_eq5_hand_computed():
    # baselines mean_{j!=i} m_j: row 0 (2 + 3)/2 = 2.5; row 1 (2 + 3)/2 = 2.5; row 2 (2 + 2)/2 = 2
    # process: row 0 (1 - 2.5, 2 - 2.5, 3 - 2.5) = (-1.5, -0.5, 0.5) -> suffix sums (-1.5, 0, 0.5)
    #          row 1 (1.5, -2.5) -> (-1, -2.5); row 2 (1) -> (1)
    # outcome (0.75, -0.75, 0), added to every valid token
    expected = torch.tensor([[-0.75, 0.75, 1.25], [-1.75, -3.25, 0.0], [1.0, 0.0, 0.0]])
    assert_close(rloo_returns_paper_eq5(HAND_PROCESS, HAND_SCORES, HAND_MASK, 3), expected)


@pytest.mark.parametrize("num_generations", [1, 3])
@pytest.mark.parametrize("gamma", [1.0, 0.8])
@pytest.mark.parametrize("empty_rows", [False, True])
def test_paper_eq5_matches_loop(generator, make_mask, with_padding_garbage, num_generations, gamma, empty_rows):
    B, T = 4 * num_generations, 5
    mask = make_mask(B, T, empty_rows=empty_rows)
    process = with_padding_garbage(torch.randn(B, T, generator=generator), mask)
    scores = torch.rand(B, generator=generator)
    scores[~mask.bool().any(-1)] = NAN
    expected = loop_paper_eq5(process, scores, mask, num_generations, gamma)
    assert_close(rloo_returns_paper_eq5(process, scores, mask, num_generations, gamma=gamma), expected)


def test_paper_eq5_agrees_with_authors_code_at_the_first_token(generator, make_mask):
    mask = make_mask(8, 6)
    process, scores = torch.randn(8, 6, generator=generator), torch.rand(8, generator=generator)
    code, paper = rloo_returns(process, scores, mask, 4), rloo_returns_paper_eq5(process, scores, mask, 4)
    assert_close(code[:, 0], paper[:, 0])
    assert not torch.allclose(code[:, 1:], paper[:, 1:])  # and only there


# --- masked_whiten ------------------------------------------------------------------------------


def test_masked_whiten_hand_computed():
    values = torch.tensor([[1.0, 2.0], [3.0, NAN]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # mean over (1, 2, 3) = 2; unbiased variance ((-1)^2 + 0 + 1^2) / (3 - 1) = 1
    expected = torch.tensor([[-1.0, 0.0], [1.0, 0.0]]) / math.sqrt(1 + 1e-8)
    assert_close(masked_whiten(values, mask), expected)


def test_masked_whiten_matches_loop(generator, make_mask, with_padding_garbage):
    mask = make_mask(6, 7, empty_rows=True)
    values = with_padding_garbage(3 + 2 * torch.randn(6, 7, generator=generator), mask)
    assert_close(masked_whiten(values, mask), loop_whiten(values, mask))


@pytest.mark.parametrize("valid", [[[0, 0], [0, 0]], [[0, 1], [0, 0]]])
def test_masked_whiten_fewer_than_two_tokens_is_zero(valid):
    values = torch.tensor([[NAN, 5.0], [NAN, NAN]])
    assert_close(masked_whiten(values, torch.tensor(valid)), torch.zeros(2, 2))


def test_masked_whiten_constant_values_is_zero():
    assert_close(masked_whiten(torch.full((2, 3), 4.0), torch.ones(2, 3)), torch.zeros(2, 3))
