"""Checkpoints of a streaming run: one file per run, replaced atomically, refused when it belongs elsewhere.

A checkpoint holds everything the run's future depends on: the trainer's tensors and optimizer states, the
RNG states, the stream position and the metrics so far, plus the config and a fingerprint of the stream it
was made with. Resuming from it continues the run bit for bit (on the same device and software).
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .atomic import atomic_write
from .config import Config
from .interactions import DataError, Interactions

FORMAT = 1


class CheckpointError(DataError):
    """A checkpoint that cannot be used: unreadable, or made by another run."""


def checkpoint_path(cfg: Config, data: Interactions) -> Path:
    """``<checkpoint_dir>/<dataset>-<method>-<task>-seed<seed>.pt``: one file per run of an experiment."""
    return Path(cfg.checkpoint_dir) / f"{data.name}-{cfg.method}-{cfg.task}-seed{cfg.seed}.pt"


def fingerprint(data: Interactions) -> dict:
    """Sizes and a digest of the stream's columns: resuming on other data is refused."""
    digest = hashlib.sha256()
    for column in (data.user, data.item, data.rating, data.timestamp):
        digest.update(np.ascontiguousarray(column).tobytes())
    return {"name": data.name, "interactions": len(data), "users": data.n_users, "items": data.n_items,
            "sha256": digest.hexdigest()}


def frame_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def bytes_frame(raw: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(raw))


def save(path: Path, payload: dict) -> None:
    """Write ``payload`` atomically: temporary file, fsync, rename. A crash leaves the previous checkpoint."""
    remove_stale(path)
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, **payload}, f)


def remove_stale(path: Path) -> None:
    """Delete temporary files left by writes of this checkpoint that were killed (SIGKILL skips cleanup)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def load(path: Path, cfg: Config, data: Interactions, device) -> dict:
    """The checkpoint at ``path``, after checking that it was made by this run (config and stream)."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"the checkpoint is unreadable ({type(exc).__name__}: {str(exc)[:200]})", path,
                              hint="it was not written by autoemb (ours are never torn): delete it to start "
                                   "over, or point checkpoint_dir elsewhere") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("not an autoemb checkpoint of this format version", path,
                              hint="delete it to start over, or resume with the autoemb version that wrote it")
    changed = cfg.differences(payload["config"])
    if changed:
        listed = "; ".join(f"{k}: checkpoint {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise CheckpointError(f"the checkpoint was made with a different config ({listed})", path,
                              hint="resume with the checkpoint's settings, or use another checkpoint_dir "
                                   "(or delete the checkpoint) to start a new run")
    if payload["data"] != fingerprint(data):
        raise CheckpointError(f"the checkpoint was made on other data ({payload['data']['name']}, "
                              f"{payload['data']['interactions']:,} interactions; now {data.name}, {len(data):,})",
                              path, hint="resume on the same stream, or use another checkpoint_dir")
    return payload
