"""Group variable-length inputs into batches under a token budget.

A padded batch costs `longest length x batch size` tokens of compute. Sorting by length puts
inputs of similar length together, so little of that is padding; the budget caps how much
a batch holds. The caller runs each batch and writes results back by index, which restores
the input order.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Input indices grouped into batches, longest inputs first.

    Each batch satisfies `max(lengths[i] for i in batch) * len(batch) <= token_budget`, except
    that an input longer than the budget on its own gets a batch of one.
    """
    if token_budget <= 0:
        raise ValueError(f"token_budget must be positive, got {token_budget}")
    # Longest first: the first batch is the largest in memory, so a too-big budget fails early.
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # In descending order the batch's padded length is the length of its first member.
        padded = lengths[current[0]] if current else lengths[i]
        if current and padded * (len(current) + 1) > token_budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
