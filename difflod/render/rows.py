"""Row gathers and scatters of the renderer's pixel batches, fast on a GPU.

`rows(x, index)` is `x[index]` and `put_rows(x, index, values)` is
`x.index_copy(0, index, values)`; on a GPU both go through single-value flat
indices (`flat_rows`, `flat_put_rows`), on the CPU through torch's row ops
(measured figures in `rows`' docstring). tests/render/test_pipeline_capturable.py
holds the flat forms to the row ops, values and gradients.
"""

from __future__ import annotations

import torch

__all__ = ["flat_put_rows", "flat_rows", "put_rows", "rows"]


def rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x[index]` for a contiguous `[N,C]` (or `[N]`) x and a `[P]` index.

    On a GPU gathered value by value through flat indices (`flat_rows`), not
    by index_select, x[index] or a gather with an expanded index: there (torch
    2.11) all three copy each row by a thread block of its own, and a
    covered-pixel gather of 0.9M 16-byte rows took 574 us on an H100, where the
    flat gather takes 34 us (163 us with its backward, vs 651). On the CPU
    index_select is the faster (the trainer's step 3% slower with the flat
    gather on this 2-core CPU).
    """
    return flat_rows(x, index) if x.is_cuda else x.index_select(0, index)


def put_rows(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """x with `x[index] = values` (out of place): `flat_put_rows` on a GPU (on the
    H100 173 us with its backward where index_copy took 684), index_copy on
    the CPU."""
    return flat_put_rows(x, index, values) if x.is_cuda else x.index_copy(0, index, values)


def flat_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """index_select(x, 0, index) as a gather of single values (see `rows`)."""
    if x.dim() == 1:
        return x.gather(0, index)
    return x.reshape(-1).gather(0, _flat(index, x.shape[1])).reshape(-1, x.shape[1])


def flat_put_rows(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """x.index_copy(0, index, values) as a scatter of single values (see `rows`)."""
    c = x.shape[1]
    return x.reshape(-1).scatter(0, _flat(index, c), values.reshape(-1)).reshape(x.shape)


def _flat(index: torch.Tensor, c: int) -> torch.Tensor:
    return (index[:, None] * c + torch.arange(c, device=index.device)).reshape(-1)
