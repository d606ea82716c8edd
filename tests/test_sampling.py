"""prime_trl.sampling: the prompt stream, joining and re-padding rows, and choosing the informative groups."""

import pytest
import torch
from trl.trainer.utils import RepeatSampler

from prime_trl.sampling import (
    DynamicSampler,
    PromptStream,
    Round,
    concat_rows,
    deal_rows,
    row_layouts,
    row_tensors,
    sampling_metrics,
    select_rows,
    trim_padding,
    usable_groups,
)

PAD = 0
LAYOUTS = row_layouts(PAD)


# -- PromptStream ----------------------------------------------------------------------------------
def test_stream_follows_the_repeat_sampler_order_and_reads_on_into_the_next_pass():
    sampler = RepeatSampler(list(range(10)), mini_repeat_count=1, batch_size=10, shuffle=True, seed=3)
    first, second = list(sampler), list(sampler)  # two epochs of GRPO's sampler
    stream = PromptStream(10, seed=3)
    assert stream.take(4) + stream.take(4) == first[:8]
    assert stream.take(4) == first[8:] + second[:2]  # the end of one pass runs into the next
    assert stream.passes == 1


def test_prompts_put_back_come_first_in_their_order():
    stream = PromptStream(6, seed=0, shuffle=False)
    assert stream.take(3) == [0, 1, 2]
    stream.put_back([1, 2])
    assert stream.take(3) == [1, 2, 3]


def test_stream_state_round_trip_continues_identically():
    stream = PromptStream(7, seed=1)
    stream.take(5)
    stream.put_back([4])
    copy = PromptStream(7, seed=99)
    copy.load_state_dict(stream.state_dict())
    assert copy.take(12) == stream.take(12)


# -- joining, dealing and re-padding rows ----------------------------------------------------------------
def _rows(prompt_lengths, completion_lengths, start=1):
    """A GRPO-shaped batch: left-padded prompts, right-padded completions, distinct ids from `start`."""
    P, T = max(prompt_lengths), max(completion_lengths)
    prompt_mask = torch.stack([(torch.arange(P) >= P - n).long() for n in prompt_lengths])
    completion_mask = torch.stack([(torch.arange(T) < n).long() for n in completion_lengths])
    ids = torch.arange(start, start + len(prompt_lengths) * (P + T)).view(-1, P + T)
    return {
        "prompt_ids": ids[:, :P] * prompt_mask,
        "prompt_mask": prompt_mask,
        "completion_ids": ids[:, P:] * completion_mask,
        "completion_mask": completion_mask,
        "old_per_token_logps": -completion_mask.float() * 0.5,
        "advantages": torch.arange(len(prompt_lengths), dtype=torch.float32),
    }


def test_rows_joined_then_taken_back_are_the_batch_they_came_from():
    a, b = _rows([2, 3], [4, 1]), _rows([5, 1, 2], [2, 6, 3], start=100)
    joined = concat_rows([a, b], LAYOUTS)
    assert joined["prompt_ids"].shape == (5, 5) and joined["completion_ids"].shape == (5, 6)
    for original, rows in ((a, slice(0, 2)), (b, slice(2, 5))):
        back = trim_padding(select_rows(joined, rows), LAYOUTS)
        for key in original:
            assert torch.equal(back[key], original[key]), key


def test_trim_keeps_a_truncated_row_whose_mask_was_zeroed_and_rounds_to_the_multiple():
    batch = _rows([2, 3], [2, 3])
    batch["completion_mask"][1] = 0  # mask_truncated_completions zeroes a truncated row; its ids stay
    padded = concat_rows([batch, _rows([1], [7])], LAYOUTS)
    trimmed = trim_padding(select_rows(padded, slice(0, 2)), LAYOUTS)
    assert trimmed["completion_ids"].shape == (2, 3) and trimmed["prompt_ids"].shape == (2, 3)
    assert trim_padding(select_rows(padded, slice(0, 2)), LAYOUTS, multiple=4)["completion_ids"].shape == (2, 4)


def test_deal_gives_each_process_its_contiguous_share():
    batch = {"x": torch.arange(8).view(8, 1)}
    assert [deal_rows(batch, r, 2)["x"].flatten().tolist() for r in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_unknown_generation_outputs_fail_clearly():
    with pytest.raises(ValueError, match="'pixel_values'"):
        row_tensors({"prompt_ids": torch.ones(2, 2), "pixel_values": torch.ones(2, 3)}, LAYOUTS)
    assert "num_items_in_batch" not in row_tensors({"prompt_ids": torch.ones(2, 2),
                                                    "num_items_in_batch": torch.tensor(4)}, LAYOUTS)


@pytest.mark.parametrize("held, G, multiple", [(7, 4, 2), (3, 4, 8), (5, 2, 6), (0, 4, 1), (9, 3, 4)])
def test_usable_groups_against_a_loop(held, G, multiple):
    # the most whole groups n <= held whose n*G rows split into `multiple` equal parts
    expected = max(n for n in range(held + 1) if (n * G) % multiple == 0)
    assert usable_groups(held, G, multiple) == expected


def test_usable_groups_by_hand():
    assert usable_groups(7, 4, 2) == 7  # 4 rows a group always split in 2
    assert usable_groups(3, 4, 8) == 2  # 8 rows need 2 groups
    assert usable_groups(5, 2, 6) == 3  # 6 rows need 3 groups


# -- DynamicSampler -------------------------------------------------------------------------------
G = 2


class FakeRounds:
    """`sample_round` whose informative prompts are known: prompt index i passes iff i is in `informative`."""

    def __init__(self, informative):
        self.informative, self.calls = set(informative), []

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        B = len(prompts) * G
        batch = _rows([1 + i % 3 for i in range(B)], [1 + (i * 7) % 5 for i in range(B)])
        batch["prompt_ids"][:, -1] = torch.tensor(prompts).repeat_interleave(G)  # tag rows by their prompt
        keep = torch.tensor([p in self.informative for p in prompts])
        rewards = keep.float().repeat_interleave(G).unsqueeze(1) * 0.5
        return Round(batch, rewards, keep, list(prompts))


def _sampler(stream, num_prompts=3, max_rounds=4, rows_multiple=1):
    return DynamicSampler(stream, num_prompts, G, max_rounds, rows_multiple, LAYOUTS)


def _prompts_of(batch):
    return batch["prompt_ids"][::G, -1].tolist()


def test_refills_with_the_first_informative_prompts_and_puts_the_surplus_back():
    stream = PromptStream(20, seed=0, shuffle=False)
    rounds = FakeRounds(informative={1, 4, 5, 7})
    sampled = _sampler(stream).sample(rounds)
    assert rounds.calls == [[0, 1, 2], [3, 4, 5]]  # the next prompts of the data order, a batch at a time
    assert _prompts_of(sampled.batch) == [1, 4, 5] and sampled.rewards.shape == (6, 1)
    assert (sampled.num_rounds, sampled.num_informative, sampled.num_trained) == (2, 3, 3) and not sampled.exhausted
    assert sampling_metrics(sampled) == {"sampling/rounds": 2.0, "sampling/prompts_sampled": 6.0,
                                         "sampling/informative_fraction": 0.5, "sampling/filled_fraction": 1.0}
    _sampler(stream).sample(rounds)
    assert rounds.calls[2] == [6, 7, 8]  # the next generation batch starts where the data order stopped


def test_surplus_informative_prompts_are_sampled_first_next_time():
    stream = PromptStream(20, seed=0, shuffle=False)
    rounds = FakeRounds(informative={1, 3, 4, 5})
    assert _prompts_of(_sampler(stream).sample(rounds).batch) == [1, 3, 4]
    _sampler(stream).sample(rounds)
    assert rounds.calls[2] == [5, 6, 7]  # 5 passed but did not fit: it leads the next round


def test_exhausted_rounds_train_on_whole_splittable_groups_and_never_on_filtered_ones():
    stream = PromptStream(20, seed=0, shuffle=False)
    rounds = FakeRounds(informative={0, 4, 8})
    sampled = _sampler(stream, num_prompts=4, max_rounds=2, rows_multiple=4).sample(rounds)
    # 2 rounds held prompts 0 and 4 (8 is never drawn); 2 groups = 4 rows split into 4 parts
    assert sampled.exhausted and _prompts_of(sampled.batch) == [0, 4]
    assert sampling_metrics(sampled)["sampling/filled_fraction"] == 0.5
    odd = _sampler(stream, num_prompts=4, max_rounds=1, rows_multiple=4).sample(FakeRounds(informative={8}))
    assert odd.num_informative == 1 and odd.num_trained == 0  # one group is 2 rows: no even split in 4
    assert odd.batch["completion_ids"].size(0) == 0
    assert stream.take(1) == [8]  # the unused informative prompt went back


def test_no_informative_group_gives_an_empty_batch_after_max_rounds():
    stream = PromptStream(20, seed=0, shuffle=False)
    rounds = FakeRounds(informative=set())
    sampled = _sampler(stream, max_rounds=3).sample(rounds)
    assert len(rounds.calls) == 3 and sampled.num_trained == 0
    assert all(t.size(0) == 0 for t in sampled.batch.values())
    assert sampling_metrics(sampled)["sampling/informative_fraction"] == 0.0
