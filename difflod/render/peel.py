"""Depth peeling: successive layers of surfaces, front to back (nvdiffrast-like).

Each layer is the nearest surface strictly behind the previous layer's depth
at that pixel. The depth floor is the exact float32 depth the visibility
kernels compare (recomputed bit for bit by torch_ref.fragment_depth32), not
the differentiable z/w of the raster, so a surface is never peeled twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

import torch

from difflod.render.backends import get_backend
from difflod.render.backends.torch_ref import fragment_depth32
from difflod.render.rasterize import barycentrics, check_inputs

__all__ = ["DepthPeeler"]


class DepthPeeler:
    """Context manager giving successive depth layers of one scene.

    Args:
        clip_pos, tris, resolution, grad_db, backend: as for
            difflod.render.rasterize.rasterize.
        capturable: no host sync and no value-dependent shape, for a render
            captured in a CUDA graph: clip_pos and tris are not checked (the
            caller did), and the depth floor is evaluated at every pixel.

    Example:
        with DepthPeeler(clip, tris, (256, 256)) as peeler:
            for _ in range(4):
                rast, rast_db = peeler.rasterize_next_layer()
    """

    def __init__(
        self,
        clip_pos: torch.Tensor,
        tris: torch.Tensor,
        resolution: Sequence[int],
        *,
        grad_db: bool = False,
        backend: str | None = None,
        capturable: bool = False,
    ) -> None:
        self._clip, self._tris, self._h, self._w = check_inputs(clip_pos, tris, resolution,
                                                                values=not capturable)
        self._dense = capturable
        self._backend = get_backend(backend, self._clip.device)
        self._grad_db = grad_db
        self._clip32 = self._clip.detach().to(torch.float32).contiguous()
        self._tris32 = self._tris.to(torch.int32).contiguous()
        self._last_ids: torch.Tensor | None = None  # the previous layer's triangle ids

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._last_ids = None

    def rasterize_next_layer(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next layer: (rast `[B,H,W,4]`, rast_db `[B,H,W,4]` or None), as rasterize's.

        Pixels with no further surface are empty (all zeros) and stay empty.
        """
        n_b = self._clip.shape[0]
        if self._tris.shape[0] == 0:
            tri_id = torch.zeros(n_b, self._h, self._w, dtype=torch.int32, device=self._clip.device)
        else:
            # the floor is computed only when a further layer is asked for, so a
            # single-layer render pays nothing for peeling
            floor = None if self._last_ids is None else \
                fragment_depth32(self._clip32, self._tris, self._last_ids, dense=self._dense)
            tri_id = self._backend.visibility(self._clip32, self._tris32, self._h, self._w, floor)
        self._last_ids = tri_id
        return barycentrics(self._clip, self._tris, tri_id, self._grad_db, self._backend.name)
