"""First-fit-decreasing packing of sequences into rows: the layout trick shared by the scoring engine
(questions with their choices) and packed training (a batch's examples).

A row holds sequences back to back; their positions restart at each sequence and attention never
crosses a boundary, so a row computes exactly what its sequences would alone, without the padding
that a batch padded to its longest sequence computes."""

from __future__ import annotations

from typing import Sequence


def first_fit_decreasing(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Rows of indices into `lengths`: longest first, each into the first row with room, so that no row
    holds more than `width` tokens (a longer sequence gets a row of its own)."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        need = lengths[i]
        slot = next((k for k, room in enumerate(free) if room >= need), None)
        if slot is None:
            rows.append([i])
            free.append(width - need)
        else:
            rows[slot].append(i)
            free[slot] -= need
    return rows
