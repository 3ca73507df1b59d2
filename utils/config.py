"""The parameters cell: ``UQ_*`` environment variables with offline defaults, validated.

Every notebook starts with a cell tagged ``parameters`` (papermill injects values after it) that reads::

    SEED   = os.environ.get("UQ_SEED", "0")        # a string: RunConfig validates and converts it
    MODEL  = os.environ.get("UQ_MODEL", "tiny")    # 'tiny', a preset name, a local path or a hub id
    DATA   = os.environ.get("UQ_DATA", "mini")     # 'mini' (offline), 'news' or 'books' (MUSE)
    DEVICE = os.environ.get("UQ_DEVICE", "auto")   # 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'

and then builds a :class:`RunConfig` from them, which validates every value with a clear error.
"""

from __future__ import annotations

import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .validation import UQError, check_choice, check_writable_dir

if TYPE_CHECKING:  # torch is imported only when a notebook sets up a run, not with this module
    import torch

DATA_CHOICES = ("mini", "news", "books")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def repo_root() -> Path:
    """The repository root (the folder that holds ``utils/``)."""
    return Path(__file__).resolve().parent.parent


def default_cache_dir() -> Path:
    """Where trained models are cached: ``$UQ_CACHE`` or ``<repo>/.cache/uq`` (gitignored)."""
    return Path(os.environ.get("UQ_CACHE") or repo_root() / ".cache" / "uq")


def check_seed(seed: object, name: str = "UQ_SEED") -> int:
    """Seeds are non-negative integers; a string of ASCII digits (an environment variable, a command-line
    argument, a notebook's parameters cell) is accepted and converted. ``name`` is the parameter the
    message names (``UQ_SEED``, ``--seed``, ``seed``)."""
    if isinstance(seed, str) and re.fullmatch(r"\s*[0-9]+\s*", seed):
        seed = int(seed)
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        seed = int(seed)  # numpy integers too
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UQError(f"{name}={seed!r} is not accepted; accepted values: a non-negative integer such as 0, 1, 2")
    return seed


def check_device(device: str) -> str:
    """Accept 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."""
    if isinstance(device, str) and re.fullmatch(r"cuda:\d+", device):
        return device
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise UQError(f"UQ_DEVICE={device!r} is not accepted; accepted values: 'auto', 'cpu', 'cuda', 'cuda:N' (N = GPU index, e.g. 'cuda:0'), 'mps'")
    return device


def check_model_name(model: str) -> str:
    """Accept 'tiny', a preset name, an existing local folder or something shaped like a hub id."""
    from .models import PRESETS  # local import: models imports config

    if not isinstance(model, str) or not model.strip():
        raise UQError(f"UQ_MODEL={model!r} is not accepted; accepted values: {', '.join(map(repr, PRESETS))}, a local model folder or a hub id 'org/name'")
    if model in PRESETS or Path(model).expanduser().is_dir() or _HUB_ID.match(model):
        return model
    raise UQError(
        f"UQ_MODEL={model!r} is not accepted: it is neither a preset ({', '.join(map(repr, PRESETS))}), "
        "an existing local model folder, nor a hub id of the form 'org/name'"
    )


@dataclass(frozen=True)
class RunConfig:
    """The validated parameters of one run of a notebook or of the study runner."""

    seed: int = 0
    model: str = "tiny"
    data: str = "mini"
    device: str = "auto"
    cache_dir: Path = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "model", check_model_name(self.model))
        object.__setattr__(self, "data", check_choice("UQ_DATA", self.data, DATA_CHOICES))
        object.__setattr__(self, "device", check_device(self.device))
        object.__setattr__(self, "cache_dir", check_writable_dir("UQ_CACHE", self.cache_dir))

    @property
    def offline_default(self) -> bool:
        """True for the tiny model on MUSE-mini: what the tests and a classroom laptop run."""
        return self.model == "tiny" and self.data == "mini"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "RunConfig":
        """Build from ``UQ_SEED``, ``UQ_MODEL``, ``UQ_DATA``, ``UQ_DEVICE``, ``UQ_CACHE``."""
        env = os.environ if environ is None else environ
        return cls(
            seed=env.get("UQ_SEED", "0"),
            model=env.get("UQ_MODEL", "tiny"),
            data=env.get("UQ_DATA", "mini"),
            device=env.get("UQ_DEVICE", "auto"),
            cache_dir=Path(env.get("UQ_CACHE") or default_cache_dir()),
        )


def offline_setup(
    seed: object, model: str, data: str, device: str, *, notebook: str, threads: int | None = 1
) -> tuple[RunConfig, "torch.device"]:
    """The set-up cell of a notebook that runs only the offline default (the tiny model on MUSE-mini).

    Builds and validates the :class:`RunConfig`, seeds everything (with ``threads`` torch threads:
    one by default, so CPU float sums are the same everywhere; ``None`` keeps ``$UQ_THREADS`` or
    torch's own count), resolves the device, refuses any other model or data with a one-line
    :class:`UQError` naming ``notebook``, and prints the seed, device and cache folder.
    Returns the config and the device.
    """
    from .repro import pick_device, seed_everything  # local import: keeps this module free of torch

    cfg = RunConfig(seed=seed, model=model, data=data, device=device)
    seed_everything(cfg.seed, threads=threads)
    torch_device = pick_device(cfg.device)
    if not cfg.offline_default:
        raise UQError(
            f"UQ_MODEL={cfg.model!r}, UQ_DATA={cfg.data!r} is not accepted by notebook {notebook}, which runs the offline "
            "default only; accepted values: UQ_MODEL='tiny' with UQ_DATA='mini' (other models: notebook 06 and "
            "`python -m utils.study`)"
        )
    print(f"seed={cfg.seed}  device={torch_device}  cache={cfg.cache_dir}")
    return cfg, torch_device
