"""Seeds: the range every command accepts, a fresh random one, and the per-item seeds of a batch."""

from __future__ import annotations

import hashlib
import secrets

MAX_SEED = 2**31 - 1


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED)


def derive_seed(batch_seed: int, index: int) -> int:
    """The seed of batch item `index` (0-based): a hash of the batch seed and the position, in 0..2**31-2."""
    digest = hashlib.sha256(f"show1-batch/{batch_seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SEED
