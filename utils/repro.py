"""Seeding and device choice: same machine, same numbers."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .config import check_seed
from .validation import UQError


def seed_everything(seed: int | str, *, threads: int | None = None, deterministic: bool = True) -> int:
    """Seed python, numpy and torch (CPU and CUDA); optionally fix torch's thread count.

    ``threads`` defaults to ``$UQ_THREADS`` when set (a fixed thread count makes CPU float sums
    reproducible across runs on the same machine). With ``deterministic`` torch is asked for
    deterministic kernels where it has them (``warn_only``: never an error). ``seed`` may be a string
    of digits (``$UQ_SEED``). Returns the seed (an int).
    """
    seed = check_seed(seed, name="seed")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if threads is None and os.environ.get("UQ_THREADS"):
        threads = int(os.environ["UQ_THREADS"])
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return seed


def torch_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (for data order independent of the global RNG)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def pick_device(preference: str = "auto") -> torch.device:
    """Resolve 'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' to a torch device.

    'auto' picks CUDA, then Apple MPS, then the CPU. Asking for a device that is absent raises a
    clear error instead of failing later inside a kernel.
    """
    if not isinstance(preference, str):
        raise UQError(f"UQ_DEVICE={preference!r} is not accepted; accepted values: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UQError(
                f"UQ_DEVICE={preference!r} asks for a GPU but CUDA is not available on this machine; "
                "accepted values here: 'auto' or 'cpu'"
            )
        dev = torch.device(preference)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UQError(f"UQ_DEVICE={preference!r}: only {torch.cuda.device_count()} CUDA device(s) are present")
        return dev
    if preference == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UQError("UQ_DEVICE='mps' asks for Apple's GPU but MPS is not available; accepted values here: 'auto' or 'cpu'")
        return torch.device("mps")
    raise UQError(f"UQ_DEVICE={preference!r} is not accepted; accepted values: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")


def supports_bf16(device: torch.device) -> bool:
    """Whether bf16 *compute* is native on ``device`` (CPU: always emulated but correct; T4: no)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return True
