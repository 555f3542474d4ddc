"""Workers of the multi-process training tests (spawned by test_training.py; importable in a fresh process).

Each worker joins a 2-process gloo group on the loopback interface (rendezvous through a file), builds the same
patched Swin classifier from the same seed, trains it for a few SGD steps on its half of every batch (DDP, or
FSDP2's fully_shard) and rank 0 saves the final parameters for the test to compare with one process training on
the whole batches.

A worker ends with os._exit once every rank has its result: torch's own teardown can deadlock here. Freeing the
DDP reducer destroys the gloo process group with the GIL held and joins its worker thread, which may still be
freeing a finished all-reduce whose thread-local state holds a Python object, and waits for the GIL (seen in
about one run in ten, native stacks of both threads). Collectives also time out after two minutes, not thirty.
"""

from __future__ import annotations

import datetime
import os
import sys

from tools.torchvision_compat import make_torchvision_importable

make_torchvision_importable()  # before transformers, which imports torchvision

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers as tf  # noqa: E402

import swin_kernels  # noqa: E402

STEPS = 3
BATCH = 4
IMAGE = (36, 28)  # 9x7 maps: padded, shifted
LABELS = 3


def build_model() -> torch.nn.Module:
    from swin_family_models import randomize_, swin_config

    config = swin_config(depths=[2, 2], num_heads=[2, 2], num_labels=LABELS)
    return randomize_(tf.SwinForImageClassification(config), seed=11).double().train()


def batches():
    gen = torch.Generator().manual_seed(5)
    for _ in range(STEPS):
        x = torch.randn(BATCH, 3, *IMAGE, generator=gen, dtype=torch.float64)
        yield x, torch.randint(0, LABELS, (BATCH,), generator=gen)


def train(model: torch.nn.Module, rank: int = 0, world: int = 1) -> None:
    """SGD on the mean cross-entropy of this rank's slice of every batch (the whole batch when world == 1)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    share = BATCH // world
    for x, y in batches():
        x, y = x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]
        F.cross_entropy(model(pixel_values=x).logits, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def full_state(model: torch.nn.Module) -> dict:
    state = {}
    for name, value in model.state_dict().items():
        value = value.full_tensor() if hasattr(value, "full_tensor") else value
        state[name.removeprefix("module.")] = value.detach().clone()
    return state


def worker(rank: int, world: int, mode: str, rendezvous: str, out_path: str, backend: str) -> None:
    # rendezvous through a file (no port to race for), gloo on the loopback interface whatever the host name is
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=2))
    model = swin_kernels.patch(build_model(), backend=backend)
    if mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    else:
        from torch.distributed.fsdp import fully_shard

        for block in [m for m in model.modules() if type(m).__name__ == "SwinLayer"]:
            fully_shard(block)
        fully_shard(model)
    train(model, rank, world)
    state = full_state(model)
    if rank == 0:
        torch.save(state, out_path)
    dist.barrier()  # every rank is done with the group: leave without torch's teardown (see the module's doc)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
