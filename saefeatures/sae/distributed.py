"""`train` on several processes under torchrun: the layers are spread over the ranks.

As in sparsify, each rank trains the SAEs of its own layers. Every rank harvests the
same token rows with the same seeds (on a CPU the forward is the cheap part), so each
SAE equals the one a single process trains, and a rank's forward stops at its own last
layer. The ranks meet twice: rank 0 tells the others which layers are left to train,
then gathers their training facts. Rank 0 alone opens the store; the others save their
SAEs into the shared `--out` folder, where rank 0 evaluates and registers them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from saefeatures.errors import SaefeaturesError

# A rank waits at the gather until the slowest has trained all of its SAEs: hours, not
# the 30 minutes torch allows by default.
PATIENCE = timedelta(days=7)


@dataclass(frozen=True)
class Team:
    """This process among torchrun's: its rank, how many ranks, its GPU on the node."""

    rank: int
    world: int
    local_rank: int

    @property
    def leader(self) -> bool:
        """Rank 0, the one that writes the store and reports the run."""
        return self.rank == 0


def from_env(environ: Mapping[str, str] = os.environ) -> Team | None:
    """The team torchrun's variables describe; None without them (or for one process),
    where `train` runs as it always did."""
    world = int(environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Team(int(environ["RANK"]), world, int(environ.get("LOCAL_RANK", "0")))


def backend(device: str) -> str:
    """NCCL between GPUs; gloo between CPU processes (NCCL has no CPU side)."""
    return "nccl" if device.startswith("cuda") else "gloo"


def check_size(layers: list[int], team: Team | None) -> None:
    """Refuse more ranks than layers: every rank trains at least one."""
    if team is not None and team.world > len(layers):
        raise SaefeaturesError(
            f"{team.world} processes for {len(layers)} layer(s): each process trains at "
            f"least one layer, so start at most {len(layers)} (torchrun --nproc-per-node)"
        )


def share(layers: list[int], team: Team | None) -> list[int]:
    """The rank's contiguous slice of the sorted layers (all of them alone), the first
    ranks taking one more when the count does not divide: shallow slices stop their
    forward early, and a slice depends only on the command and the number of ranks, so
    a rerun finds the rank's checkpoint."""
    if team is None:
        return list(layers)
    size, extra = divmod(len(layers), team.world)
    start = team.rank * size + min(team.rank, extra)
    return list(layers[start : start + size + (team.rank < extra)])


@contextmanager
def joined(team: Team | None, device: str) -> Iterator[None]:
    """The process group for the run (nothing alone). On cuda the rank's GPU, cuda:LOCAL_RANK,
    becomes the current device, so that every tensor put on "cuda" lands there."""
    if team is None:
        yield
        return
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(team.local_rank)
    dist.init_process_group(backend(device), timeout=PATIENCE)
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast(value: Any, team: Team | None) -> Any:
    """Rank 0's `value`, on every rank."""
    if team is None:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, team: Team | None) -> list[Any]:
    """Every rank's `value` in rank order at rank 0 (the others get []): small facts only,
    the SAEs themselves are files in the shared folder."""
    if team is None:
        return [value]
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * team.world if team.leader else None
    dist.gather_object(value, gathered, dst=0)
    return gathered or []
