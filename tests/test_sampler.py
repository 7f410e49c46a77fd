"""`sample_batch` on its own: greedy rows among sampled ones, in either proportion (the greedy
argmax reads the logits in place when most rows are greedy, through a row copy otherwise)."""

from __future__ import annotations

import pytest
import torch

from brainwork.engine.sampler import SamplingRow, sample_batch
from brainwork.sampling_params import SamplingParams


@pytest.mark.parametrize("greedy_rows", [[0], [1, 2, 3], [0, 1, 2, 3]])
def test_greedy_rows_take_the_argmax_and_sampled_rows_follow_their_seed(greedy_rows: list[int]) -> None:
    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))  # (S, V)

    def rows() -> list[SamplingRow]:
        out = []
        for i in range(4):
            temp = 0.0 if i in greedy_rows else 1.0
            out.append(
                SamplingRow(SamplingParams(temperature=temp, max_tokens=1), [5, 6], 2, torch.Generator().manual_seed(i))
            )
        return out

    first = sample_batch(logits.clone(), rows())
    again = sample_batch(logits.clone(), rows())
    want = logits.argmax(dim=-1).tolist()
    for i in range(4):
        token = first.tokens[i]
        assert token is not None
        if i in greedy_rows:
            assert token.token_id == want[i]
        assert again.tokens[i] is not None and again.tokens[i].token_id == token.token_id  # seeded
    sampled = [i for i in range(4) if i not in greedy_rows]
    assert not sampled or any(first.tokens[i].token_id != want[i] for i in sampled)  # a real draw (V = 1000)
