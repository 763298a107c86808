"""The weights lock of a folder of trained components: the exact files each stage reads, with sizes and sha256.

The lock has the format of show1's `weights.lock`, so `show1 weights list/verify` and every stage check a
trained cascade (the micro cascade shipped with show1, or a user's own, `show1 weights lock --local DIR`)
exactly as they check the real one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from show1_cli.errors import InputError
from show1_cli.weights import LOCK_FORMAT, MICRO_OWNER, load_lock

MICRO_PURPOSE = {
    "show-1-base": "micro stage 1 keyframes; its T5 encoder serves all pixel stages",
    "show-1-interpolation": "micro stage 2 frame interpolation",
    "show-1-sr1": "micro stage 3 pixel super-resolution",
    "show-1-sr2": "micro stage 4 latent expert translation (CLIP text, VAE)",
}


def _locked_files(folder: Path) -> list[dict]:
    """Every file of a component folder the stages read (not the image processor config, not local stamps)."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith((".", "feature_extractor/")) or "/." in relative:
            continue
        data = path.read_bytes()
        files.append({"path": relative, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return files


def write_folder_lock(root: Path, target: Path, *, owner: str, purposes: dict[str, str], about: list[str]) -> Path:
    """A lock at `target` pinning every file of the components root/<name>/ named in `purposes` that exist."""
    components = {}
    for name, purpose in purposes.items():
        if (root / name).is_dir():
            components[name] = {"repo_id": f"{owner}/{name}", "revision": None, "gated": False, "purpose": purpose,
                                "files": _locked_files(root / name)}
    if not components:
        raise InputError(f"{root} holds none of the components {', '.join(purposes)}", "pass a folder with DIR/<component>/ folders")
    lock = {"_about": about, "format": LOCK_FORMAT, "components": components}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")
    load_lock(target)  # the lock must parse like any other
    return target


def write_micro_lock(root: Path) -> Path:
    """root/weights.lock for the micro cascade's components in root/<name>/."""
    about = ["The micro cascade shipped with show1, trained by `make micro-weights` (show1_cli/training/micro.py).",
             "Same layouts and classes as the showlab repositories; every file pinned by size and sha256."]
    return write_folder_lock(root, root / "weights.lock", owner=MICRO_OWNER, purposes=MICRO_PURPOSE, about=about)
