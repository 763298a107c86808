"""The model weights Show-1 needs: the lock, where each component lives, and checking it.

`weights.lock` (JSON) pins, for each component, the hub repository, the commit and the files a stage
needs, with exact sizes and sha256 where they are known. Nothing here guesses a hash: unknown values are
null in the lock and `update_lock` (online) fills them in from the hub's file metadata.

A component resolves to a folder laid out exactly as its hub repository:
- local-folder mode (`--weights-dir DIR` or `SHOW1_WEIGHTS_DIR`): `DIR/<name>/`, e.g. `DIR/show-1-base/`;
- otherwise the huggingface_hub cache, at the pinned commit (`.../models--owner--repo/snapshots/<rev>/`).
Resolving never downloads; `pull_component` does, through huggingface_hub.

Hashing 20 GB on every run would be too slow, so a full check (`verify_component`, or the first
resolve of a file whose hash is known) records a stamp (path, size, mtime, hash); later loads compare
stamps only. Stamps live in `DIR/<name>/.show1-verified.json` in local-folder mode (in the show1 cache
folder when DIR is read-only) and in the show1 cache folder (`SHOW1_CACHE_DIR`, default
`~/.cache/show1`) for the hub cache.

This module is library code: no typer or rich here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from show1_cli.errors import InputError, WeightsError
from show1_cli.resources import data_path

COMPONENTS: tuple[str, ...] = (
    "show-1-base",
    "show-1-interpolation",
    "show-1-sr1",
    "show-1-sr2",
    "IF-II-L-v1.0",
)

LOCK_ENV = "SHOW1_WEIGHTS_LOCK"
WEIGHTS_DIR_ENV = "SHOW1_WEIGHTS_DIR"
CACHE_DIR_ENV = "SHOW1_CACHE_DIR"
STAMP_NAME = ".show1-verified.json"
LOCK_FORMAT = 1
UNKNOWN_NOTE = "unknown until `show1 weights lock --update`"

# File states, from best to worst.
VERIFIED = "verified"  # hash known and checked (stamp matches the file and the lock)
UNVERIFIED = "unverified"  # present; the lock has no hash for it, so only presence/size are checked
PRESENT = "present"  # present; hash known but not checked since the file last changed
MISSING = "missing"
CORRUPT = "corrupt"  # size or hash differs from the lock

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 8 * 1024 * 1024

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LockedFile:
    """One file of a component: its path in the repository, exact size and sha256 where known."""

    path: str
    size: int | None
    sha256: str | None
    git_sha1: str | None = None  # git blob id of a small (non-LFS) file, when the lock knows it
    alternatives: tuple[str, ...] = ()  # other names the file may have on the hub (lock not settled)
    approx: str | None = None  # human note on the size ("3.45 GB"); never checked

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.path, *self.alternatives)

    @property
    def hash_known(self) -> bool:
        return self.sha256 is not None or self.git_sha1 is not None


@dataclass(frozen=True)
class Component:
    """One hub repository the cascade needs, pinned to a commit."""

    name: str
    repo_id: str
    revision: str | None
    gated: bool
    files: tuple[LockedFile, ...]
    purpose: str
    optional: bool = False
    revision_note: str | None = None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"

    def lock_sha256(self) -> str:
        """A hash of this component's lock entry (revision, files, sizes, hashes): the exact pin a run used."""
        entry = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(entry.encode()).hexdigest()


@dataclass(frozen=True)
class FileStatus:
    """What was found for one locked file."""

    path: str  # the path in the repository (the alternative actually present, if any)
    state: str  # VERIFIED, UNVERIFIED, PRESENT, MISSING or CORRUPT
    detail: str
    location: Path  # where the file is, or where it was looked for

    def __str__(self) -> str:
        return f"{self.path}: {self.state} ({self.detail})"


@dataclass(frozen=True)
class ComponentStatus:
    component: Component
    mode: str  # "dir" or "cache"
    root: Path  # the folder laid out as the hub repository (may not exist)
    files: tuple[FileStatus, ...] = field(default_factory=tuple)

    @property
    def state(self) -> str:
        """The worst file state: corrupt > missing > present > unverified > verified."""
        states = {f.state for f in self.files}
        for state in (CORRUPT, MISSING, PRESENT, UNVERIFIED):
            if state in states:
                return state
        return VERIFIED

    @property
    def any_present(self) -> bool:
        return any(f.state != MISSING for f in self.files)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.state] = counts.get(f.state, 0) + 1
        order = (CORRUPT, MISSING, PRESENT, UNVERIFIED, VERIFIED)
        return ", ".join(f"{counts[s]} {s}" for s in order if s in counts) + f" of {len(self.files)} files"


# ----------------------------------------------------------------------------------------------------
# The lock


def default_lock_path() -> Path:
    """`SHOW1_WEIGHTS_LOCK`, else the lock shipped with show1.

    The shipped lock is looked for as package data (`show1_cli/weights.lock`, in an installed wheel)
    and then at the source checkout's root (`Path(__file__).parents[1] / "weights.lock"`).
    """
    env = os.environ.get(LOCK_ENV)
    if env:
        return Path(env).expanduser()
    try:
        return data_path("weights.lock")
    except FileNotFoundError:
        return Path(__file__).resolve().parents[1] / "weights.lock"


def _bad_lock(path: Path, what: str) -> WeightsError:
    return WeightsError(
        f"weights lock {path} is invalid: {what}",
        fix="restore weights.lock from the show1 release, or fix the entry",
    )


def _read_raw_lock(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f" (set by {LOCK_ENV})" if os.environ.get(LOCK_ENV) else ""
        raise WeightsError(
            f"weights lock not found at {path}{hint}",
            fix=f"reinstall show1 (the package ships weights.lock) or point {LOCK_ENV} at a lock file",
        ) from None
    except OSError as exc:
        raise WeightsError(f"cannot read weights lock {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad_lock(path, f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("components"), dict):
        raise _bad_lock(path, 'expected an object with a "components" object')
    if raw.get("format", LOCK_FORMAT) != LOCK_FORMAT:
        raise _bad_lock(path, f"format {raw.get('format')!r}, this show1 reads format {LOCK_FORMAT}")
    return raw


def _check_repo_path(lock_path: Path, where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _bad_lock(lock_path, f"{where}: path must be a non-empty string")
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or any(p in ("", ".", "..") for p in parts):
        raise _bad_lock(lock_path, f"{where}: {value!r} is not a plain relative path")
    return value


def _parse_file(lock_path: Path, where: str, entry: object) -> LockedFile:
    if not isinstance(entry, dict):
        raise _bad_lock(lock_path, f"{where}: each file must be an object")
    path = _check_repo_path(lock_path, where, entry.get("path"))
    where = f"{where} {path}"
    size = entry.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise _bad_lock(lock_path, f"{where}: size must be a byte count or null")
    sha256 = entry.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _HEX64.match(sha256)):
        raise _bad_lock(lock_path, f"{where}: sha256 must be 64 lower-case hex digits or null")
    git_sha1 = entry.get("git_sha1")
    if git_sha1 is not None and (not isinstance(git_sha1, str) or not _HEX40.match(git_sha1)):
        raise _bad_lock(lock_path, f"{where}: git_sha1 must be 40 lower-case hex digits or null")
    alternatives = entry.get("alternatives") or []
    if not isinstance(alternatives, list):
        raise _bad_lock(lock_path, f"{where}: alternatives must be a list")
    alts = tuple(_check_repo_path(lock_path, where, a) for a in alternatives)
    approx = entry.get("approx")
    return LockedFile(
        path=path,
        size=size,
        sha256=sha256,
        git_sha1=git_sha1,
        alternatives=alts,
        approx=approx if isinstance(approx, str) else None,
    )


def _parse_component(lock_path: Path, name: str, entry: object) -> Component:
    where = f"component {name}"
    if not isinstance(entry, dict):
        raise _bad_lock(lock_path, f"{where} must be an object")
    repo_id = entry.get("repo_id")
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise _bad_lock(lock_path, f"{where}: repo_id must look like 'owner/name'")
    revision = entry.get("revision")
    if revision is not None and (not isinstance(revision, str) or not _HEX40.match(revision)):
        raise _bad_lock(lock_path, f"{where}: revision must be a full 40-digit commit hash or null")
    gated = entry.get("gated", False)
    if not isinstance(gated, bool):
        raise _bad_lock(lock_path, f"{where}: gated must be true or false")
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        raise _bad_lock(lock_path, f"{where}: files must be a non-empty list")
    parsed = tuple(_parse_file(lock_path, where, f) for f in files)
    seen: set[str] = set()
    for f in parsed:
        for candidate in f.candidates:
            if candidate in seen:
                raise _bad_lock(lock_path, f"{where}: {candidate} is listed twice")
            seen.add(candidate)
    purpose = entry.get("purpose", "")
    note = entry.get("revision_note")
    return Component(
        name=name,
        repo_id=repo_id,
        revision=revision,
        gated=gated,
        files=parsed,
        purpose=purpose if isinstance(purpose, str) else "",
        optional=bool(entry.get("optional", False)),
        revision_note=note if isinstance(note, str) else None,
    )


def load_lock(path: Path | None = None) -> dict[str, Component]:
    """Parse a weights lock (default: `default_lock_path()`) into components, in lock order."""
    lock_path = Path(path) if path is not None else default_lock_path()
    raw = _read_raw_lock(lock_path)
    components: dict[str, Component] = {}
    for name, entry in raw["components"].items():
        _check_repo_path(lock_path, "component name", name)
        if "/" in name:
            raise _bad_lock(lock_path, f"component name {name!r} must not contain '/'")
        components[name] = _parse_component(lock_path, name, entry)
    if not components:
        raise _bad_lock(lock_path, "no components")
    return components


def format_lock(raw: dict) -> str:
    """The lock as written to disk: indented JSON with one line per file entry."""
    items = []
    for key, value in raw.items():
        if key != "components":
            body = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            items.append(f"  {json.dumps(key)}: {body}")
            continue
        comps = []
        for cname, comp in value.items():
            fields = []
            for fkey, fval in comp.items():
                if fkey == "files" and isinstance(fval, list):
                    lines = ",\n".join("        " + json.dumps(f, ensure_ascii=False) for f in fval)
                    fields.append(f'      "files": [\n{lines}\n      ]')
                else:
                    fields.append(f"      {json.dumps(fkey)}: {json.dumps(fval, ensure_ascii=False)}")
            comps.append(f"    {json.dumps(cname)}: {{\n" + ",\n".join(fields) + "\n    }")
        items.append('  "components": {\n' + ",\n".join(comps) + "\n  }")
    return "{\n" + ",\n".join(items) + "\n}\n"


def get_component(name: str, lock: dict[str, Component] | None = None) -> Component:
    """Look a component up by name (case-insensitive) or by hub repo id."""
    lock = lock if lock is not None else load_lock()
    if name in lock:
        return lock[name]
    for comp in lock.values():
        if name.lower() in (comp.name.lower(), comp.repo_id.lower()):
            return comp
    raise InputError(
        f"unknown weights component {name!r}",
        fix="use one of: " + ", ".join(lock),
    )


# ----------------------------------------------------------------------------------------------------
# Where things live


def weights_dir_from_env(explicit: Path | None) -> Path | None:
    """The local weights folder: `explicit` (`--weights-dir`) beats `SHOW1_WEIGHTS_DIR`; None = hub cache."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env).expanduser() if env else None


MICRO = "micro"  # the preset `weights:` value of the micro cascade shipped with show1
MICRO_OWNER = "show1-micro"  # the repo_id owner in the micro cascade's lock
MICRO_HINT = "; or try show1 offline with the micro cascade it ships: --preset micro"
HUB_PROBE_SECONDS = 5.0  # how long to wait for the hub to answer before saying it cannot be reached


@dataclass(frozen=True)
class WeightSource:
    """Where a run's components come from: a weights folder (None: the hub cache) and the lock that pins them."""

    weights_dir: Path | None = None
    lock_path: Path | None = None  # None: the default lock (SHOW1_WEIGHTS_LOCK or the shipped one)

    def lock(self) -> dict[str, Component]:
        return self._lock

    @functools.cached_property
    def _lock(self) -> dict[str, Component]:  # read once per source: a run asks for it at every stage
        return load_lock(self.lock_path)

    def has(self, name: str) -> bool:
        return name in self.lock()

    def resolve(self, name: str) -> Path:
        return resolve_component(name, self.weights_dir, lock=self.lock())

    def status(self, name: str) -> ComponentStatus:
        return component_status(name, self.weights_dir, lock=self.lock())


def micro_weights() -> WeightSource:
    """The micro cascade inside show1 (`show1_cli/data/micro/`, with its own lock)."""
    try:
        folder = data_path("micro")
    except FileNotFoundError:
        raise WeightsError("the micro cascade is not in this show1 installation (show1_cli/data/micro/ is missing)",
                           fix="build it with `make micro-weights` (trains it on the CPU), or use the hub weights") from None
    return WeightSource(folder, folder / "weights.lock")


def micro_available() -> bool:
    try:
        return (data_path("micro") / "weights.lock").is_file()
    except FileNotFoundError:
        return False


def weight_source(weight_set: str, weights_dir: Path | None) -> WeightSource:
    """The components a preset's `weights:` names: the shipped micro cascade, or the hub weights in
    `weights_dir` (None: the hub cache) pinned by the default lock."""
    if weight_set == MICRO:
        return micro_weights()
    return WeightSource(weights_dir)


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder, read from the environment now (not at import time)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def show1_cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "show1"


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE asks for no network access (read now, not at import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _repo_cache_folder(comp: Component) -> Path:
    return hub_cache_dir() / ("models--" + comp.repo_id.replace("/", "--"))


def _cache_revision(comp: Component) -> str:
    """The pinned commit; without one, what the cache's refs/main points at (or 'main')."""
    if comp.revision:
        return comp.revision
    ref = _repo_cache_folder(comp) / "refs" / "main"
    try:
        return ref.read_text().strip() or "main"
    except OSError:
        return "main"


def component_root(comp: Component, weights_dir: Path | None) -> tuple[str, Path]:
    """("dir" | "cache", the folder laid out as the hub repository) for `comp`; it may not exist."""
    if weights_dir is not None:
        return "dir", Path(weights_dir) / comp.name
    return "cache", _repo_cache_folder(comp) / "snapshots" / _cache_revision(comp)


def _stamp_files(comp: Component, mode: str, root: Path) -> tuple[Path, ...]:
    """Where hash stamps are kept, preferred first.

    Local folder: next to the files, with a fallback in the show1 cache folder for read-only (shared)
    weight folders. Hub cache: the show1 cache folder only (the hub cache belongs to huggingface_hub).
    """
    rev = comp.revision or "unpinned"
    in_cache = show1_cache_dir() / "verified" / f"{comp.repo_id.replace('/', '--')}@{rev}.json"
    if mode == "dir":
        folder_id = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        return root / STAMP_NAME, in_cache.with_name(f"{comp.name}-dir-{folder_id}.json")
    return (in_cache,)


def pull_command(comp: Component, weights_dir: Path | None) -> str:
    """The exact command that fetches `comp` to where it is looked for."""
    cmd = f"show1 weights pull {comp.name}"
    if weights_dir is not None:
        cmd += f" --dir {shlex.quote(str(weights_dir))}"
    return cmd


def _gated_fix(comp: Component) -> str:
    return (
        f"{comp.repo_id} is gated: accept its licence at {comp.url}, then log in with "
        "`hf auth login` or set HF_TOKEN (or pass --token to pull)"
    )


def _copy_fix(comp: Component) -> str:
    """How to get a component onto a machine without a network."""
    return f"copy the files into DIR/{comp.name}/ laid out as {comp.url} and pass --weights-dir DIR"


def _micro_hint(comp: Component) -> str:
    return MICRO_HINT if micro_available() and not comp.repo_id.startswith(f"{MICRO_OWNER}/") else ""


def _get_fix(comp: Component, weights_dir: Path | None) -> str:
    fix = f"run `{pull_command(comp, weights_dir)}` where there is a network; without one, {_copy_fix(comp)}"
    if comp.gated:
        fix += "; " + _gated_fix(comp)
    if comp.optional:
        fix += "; this component is optional"
    return fix


def _where(comp: Component, mode: str, root: Path) -> str:
    if mode == "dir":
        return f"{root}"
    return f"the huggingface_hub cache at {root}"


# ----------------------------------------------------------------------------------------------------
# Hashing and stamps


def hash_file(path: Path, *, git_sha1: bool = False) -> tuple[str, str | None]:
    """(sha256, git blob sha1 or None) of a file, read once."""
    sha = hashlib.sha256()
    blob = None
    if git_sha1:
        blob = hashlib.sha1()
        blob.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            if blob is not None:
                blob.update(chunk)
    return sha.hexdigest(), blob.hexdigest() if blob is not None else None


def _load_stamps(stamp_files: tuple[Path, ...]) -> dict[str, dict]:
    """The recorded stamps; entries in earlier (preferred) files win."""
    merged: dict[str, dict] = {}
    for stamp_file in reversed(stamp_files):
        try:
            data = json.loads(stamp_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        files = data.get("files") if isinstance(data, dict) else None
        if isinstance(files, dict):
            merged.update(files)
    return merged


def _save_stamps(stamp_files: tuple[Path, ...], stamps: dict[str, dict]) -> None:
    """Write the stamps to the first place that accepts them; if none does, checks are just repeated."""
    text = json.dumps(
        {"about": "show1 hash stamps: sha256 of each file as last hashed by show1", "files": stamps},
        indent=1,
        sort_keys=True,
    )
    for stamp_file in stamp_files:
        tmp = stamp_file.with_name(stamp_file.name + ".tmp")
        try:
            stamp_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, stamp_file)
            return
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def _stamp_key(file_path: Path) -> tuple[str, int, int]:
    real = file_path.resolve()
    st = real.stat()
    return str(real), st.st_size, st.st_mtime_ns


def _valid_stamp(stamps: dict[str, dict], rel: str, file_path: Path) -> dict | None:
    stamp = stamps.get(rel)
    if not isinstance(stamp, dict):
        return None
    real, size, mtime = _stamp_key(file_path)
    if stamp.get("realpath") == real and stamp.get("size") == size and stamp.get("mtime_ns") == mtime:
        return stamp
    return None


def _make_stamp(file_path: Path, sha256: str, git_sha1: str | None) -> dict:
    real, size, mtime = _stamp_key(file_path)
    stamp = {"realpath": real, "size": size, "mtime_ns": mtime, "sha256": sha256}
    if git_sha1:
        stamp["git_sha1"] = git_sha1
    return stamp


def _hash_mismatch(lf: LockedFile, stamp: dict) -> str | None:
    """Why a recorded hash contradicts the lock, or None when it agrees."""
    if lf.sha256 is not None:
        if stamp.get("sha256") != lf.sha256:
            return f"sha256 {stamp.get('sha256')} but the lock says {lf.sha256}"
        return None
    if lf.git_sha1 is not None:
        if stamp.get("git_sha1") != lf.git_sha1:
            return f"git blob id {stamp.get('git_sha1')} but the lock says {lf.git_sha1}"
    return None


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{size} B"


# ----------------------------------------------------------------------------------------------------
# Status, verification, resolution


def _check_file(
    lf: LockedFile, root: Path, stamps: dict[str, dict], *, hashing: str, progress: Progress | None
) -> tuple[FileStatus, dict | None]:
    """The status of one file, and a new stamp when it was hashed.

    hashing: "never" (stamps only), "unstamped" (hash if the lock knows the hash and no stamp is
    valid) or "always" (hash if the lock knows the hash). Files whose hash the lock does not know are
    never hashed: there is nothing to compare with.
    """
    found = next((c for c in lf.candidates if (root / c).is_file()), None)
    if found is None:
        return FileStatus(lf.path, MISSING, "not found", root / lf.path), None
    file_path = root / found
    size = file_path.stat().st_size
    if lf.size is not None and size != lf.size:
        detail = f"size {size} bytes but the lock says {lf.size}"
        return FileStatus(found, CORRUPT, detail, file_path), None
    if not lf.hash_known:
        detail = "hash unknown, run `show1 weights lock --update`"
        return FileStatus(found, UNVERIFIED, detail, file_path), None
    stamp = None if hashing == "always" else _valid_stamp(stamps, found, file_path)
    new_stamp = None
    if stamp is None and hashing != "never":
        if progress is not None:
            progress(f"hashing {found} ({_human(size)})")
        sha, blob = hash_file(file_path, git_sha1=lf.sha256 is None)
        stamp = new_stamp = _make_stamp(file_path, sha, blob)
    if stamp is None:
        detail = "not hashed since it last changed, run `show1 weights verify`"
        return FileStatus(found, PRESENT, detail, file_path), None
    mismatch = _hash_mismatch(lf, stamp)
    if mismatch:
        return FileStatus(found, CORRUPT, mismatch, file_path), new_stamp
    return FileStatus(found, VERIFIED, "hash matches the lock", file_path), new_stamp


def _status(
    comp: Component,
    weights_dir: Path | None,
    *,
    hashing: str = "never",
    progress: Progress | None = None,
) -> ComponentStatus:
    mode, root = component_root(comp, weights_dir)
    stamp_files = _stamp_files(comp, mode, root)
    stamps = _load_stamps(stamp_files)
    results = []
    changed = False
    for lf in comp.files:
        status, new_stamp = _check_file(lf, root, stamps, hashing=hashing, progress=progress)
        if new_stamp is not None:
            stamps[status.path] = new_stamp
            changed = True
        results.append(status)
    if changed:
        _save_stamps(stamp_files, stamps)
    return ComponentStatus(comp, mode, root, tuple(results))


def component_status(
    name: str, weights_dir: Path | None = None, *, lock: dict[str, Component] | None = None
) -> ComponentStatus:
    """Per-file status of a component, cheaply: presence, size and recorded stamps; hashes nothing."""
    return _status(get_component(name, lock), weights_dir)


def verify_component(
    name: str,
    weights_dir: Path | None = None,
    *,
    lock: dict[str, Component] | None = None,
    progress: Progress | None = None,
) -> list[FileStatus]:
    """Hash every present file whose hash the lock knows, record stamps, and return the problems.

    A problem is a file that is CORRUPT (size or hash differs from the lock) or MISSING. Files whose
    hash the lock does not know are checked for presence and size only and are not problems.
    """
    status = _status(get_component(name, lock), weights_dir, hashing="always", progress=progress)
    return [f for f in status.files if f.state in (CORRUPT, MISSING)]


def resolve_component(
    name: str,
    weights_dir: Path | None = None,
    *,
    lock: dict[str, Component] | None = None,
    hash_unchecked: bool = True,
    progress: Progress | None = None,
) -> Path:
    """The folder, laid out as the hub repository, that holds every locked file of a component.

    Never downloads. Files whose hash the lock knows and that were not hashed since they last changed
    are hashed now (once; a stamp records it) unless `hash_unchecked` is False. Raises WeightsError
    naming the component, where it looked and the command that gets it when files are missing, and
    refuses files whose size or hash differs from the lock.
    """
    comp = get_component(name, lock)
    status = _status(comp, weights_dir, hashing="unstamped" if hash_unchecked else "never", progress=progress)
    corrupt = [f for f in status.files if f.state == CORRUPT]
    if corrupt:
        bad = corrupt[0]
        more = f" (and {len(corrupt) - 1} more)" if len(corrupt) > 1 else ""
        raise WeightsError(
            f"refusing {comp.name}: {bad.location} does not match the weights lock: {bad.detail}{more}",
            fix=f"delete the file and run `{pull_command(comp, weights_dir)}`",
        )
    missing = [f for f in status.files if f.state == MISSING]
    if missing:
        where = _where(comp, status.mode, status.root)
        rev = f" at revision {comp.revision}" if comp.revision else ""
        if len(missing) == len(status.files):
            what = f"weights for {comp.name} ({comp.repo_id}{rev}) not found in {where}"
        else:
            names = ", ".join(f.path for f in missing[:3]) + (" ..." if len(missing) > 3 else "")
            what = (
                f"weights for {comp.name} ({comp.repo_id}{rev}) incomplete in {where}: "
                f"{len(missing)} of {len(status.files)} files missing ({names})"
            )
        raise WeightsError(what, fix=_get_fix(comp, weights_dir) + _micro_hint(comp))
    return status.root


def resolve_optional_component(
    name: str,
    weights_dir: Path | None = None,
    *,
    lock: dict[str, Component] | None = None,
    progress: Progress | None = None,
) -> Path | None:
    """Like `resolve_component`, but None when no file of the component is present at all.

    For optional components (IF-II-L-v1.0): absent means "use the fallback"; a partial or corrupt
    copy is still an error, since the user evidently meant to provide it.
    """
    comp = get_component(name, lock)
    if not _status(comp, weights_dir).any_present:
        return None
    return resolve_component(comp.name, weights_dir, lock=lock, progress=progress)


# ----------------------------------------------------------------------------------------------------
# Network: pull and lock update


def _hub_errors():
    from huggingface_hub import utils  # re-exports the hub's error classes in old and new releases

    return utils


def _network_error(comp: Component, exc: Exception, weights_dir: Path | None, action: str) -> WeightsError:
    errors = _hub_errors()
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, errors.GatedRepoError):
        return WeightsError(f"cannot {action} {comp.name}: access to {comp.repo_id} is gated", fix=_gated_fix(comp))
    if isinstance(exc, errors.RevisionNotFoundError):
        return WeightsError(
            f"cannot {action} {comp.name}: revision {comp.revision} not found in {comp.repo_id}",
            fix="check the revision in weights.lock",
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        fix = _gated_fix(comp) if comp.gated else f"check that {comp.url} exists and your token can read it"
        return WeightsError(f"cannot {action} {comp.name}: repository {comp.repo_id} not found or not accessible", fix=fix)
    if isinstance(exc, errors.LocalEntryNotFoundError) or isinstance(exc, (ConnectionError, TimeoutError)):
        return _unreachable_error(comp, action, weights_dir, reason)
    return WeightsError(f"cannot {action} {comp.name}: {reason}")


def _is_hub_failure(exc: Exception) -> bool:
    """Errors that come from the hub or the network (whichever HTTP client huggingface_hub uses)."""
    errors = _hub_errors()
    if isinstance(exc, (errors.HfHubHTTPError, errors.HFValidationError, errors.LocalEntryNotFoundError, OSError)):
        return True
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "requests", "urllib3")


def _offline_error(comp: Component, action: str, weights_dir: Path | None) -> WeightsError:
    return WeightsError(
        f"cannot {action} {comp.name}: HF_HUB_OFFLINE is set, nothing can be downloaded",
        fix=f"unset HF_HUB_OFFLINE and retry, or {_copy_fix(comp)}{_micro_hint(comp)}",
    )


def _unreachable_error(comp: Component, action: str, weights_dir: Path | None, reason: str) -> WeightsError:
    from huggingface_hub import constants

    return WeightsError(
        f"cannot {action} {comp.name}: the hub ({constants.ENDPOINT}) cannot be reached: {reason}",
        fix=f"run `{pull_command(comp, weights_dir)}` where there is a network (check a proxy or HF_ENDPOINT); "
        f"without one, {_copy_fix(comp)}{_micro_hint(comp)}",
    )


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached, or None when it answers: one request with a short timeout, so that a machine
    without a network hears so in seconds instead of waiting out huggingface_hub's retries. Proxies set in the
    environment are used, as huggingface_hub uses them."""
    import http.client  # here, not at the top: about 40 ms of imports that only a download needs
    import ssl
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=HUB_PROBE_SECONDS).close()
    except (urllib.error.HTTPError, http.client.HTTPException):
        return None  # something answered, if with an error: the download itself will say what is wrong
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLError):
            return None  # a proxy that re-signs TLS: huggingface_hub may have its certificate bundle
        return _probe_failure(error.reason)
    except (OSError, ValueError) as error:  # a timeout, a reset; ValueError: HF_ENDPOINT is not a URL
        return _probe_failure(error)
    return None


def _probe_failure(error: BaseException | str) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {HUB_PROBE_SECONDS:g} s"
    return str(getattr(error, "strerror", None) or error or type(error).__name__)


def _remove_download(path: Path, mode: str) -> None:
    """Delete a refused download (and, in the hub cache, the blob the snapshot link points at)."""
    try:
        if mode == "cache" and path.is_symlink():
            blob = path.resolve()
            path.unlink()
            blob.unlink(missing_ok=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def pull_component(
    name: str,
    target_dir: Path | None = None,
    token: str | bool | None = None,
    *,
    lock: dict[str, Component] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Download exactly the locked files of a component at its pinned revision and verify them.

    `target_dir` is a weights folder (files go to `target_dir/<name>/`); None = the huggingface_hub
    cache. Files already present and verified are skipped; corrupt ones are fetched again. A file
    whose hash does not match the lock after download is deleted and refused (WeightsError).
    """
    comp = get_component(name, lock)
    if hub_offline():
        raise _offline_error(comp, "download", target_dir)
    reason = hub_unreachable()
    if reason is not None:
        raise _unreachable_error(comp, "download", target_dir, reason)
    from huggingface_hub import hf_hub_download

    errors = _hub_errors()
    mode, root = component_root(comp, target_dir)
    before = _status(comp, target_dir)
    by_path = {f.path: f for f in before.files}
    kwargs: dict = {"revision": comp.revision, "token": token}
    if mode == "dir":
        root.mkdir(parents=True, exist_ok=True)
        kwargs["local_dir"] = root
    else:
        kwargs["cache_dir"] = hub_cache_dir()
    for lf in comp.files:
        current = next((by_path[c] for c in lf.candidates if c in by_path), None)
        if current is not None and current.state == VERIFIED:
            continue
        force = current is not None and current.state == CORRUPT
        got = None
        for candidate in lf.candidates:
            if progress is not None:
                progress(f"{comp.name}: {candidate}")
            try:
                got = Path(hf_hub_download(comp.repo_id, candidate, force_download=force, **kwargs))
                break
            except errors.LocalEntryNotFoundError as exc:  # no network (a subclass of EntryNotFoundError)
                raise _network_error(comp, exc, target_dir, "download") from exc
            except errors.EntryNotFoundError:
                continue  # not on the hub under this name: try the next candidate
            except (errors.HfHubHTTPError, errors.HFValidationError, OSError) as exc:
                raise _network_error(comp, exc, target_dir, "download") from exc
        if got is None:
            raise WeightsError(
                f"{comp.repo_id} has no {' or '.join(lf.candidates)} at revision {comp.revision}",
                fix="run `show1 weights lock --update` to refresh the lock",
            )
    # Check everything now on disk against the lock; refuse what does not match.
    after = _status(comp, target_dir, hashing="unstamped", progress=progress)
    corrupt = [f for f in after.files if f.state == CORRUPT]
    for f in corrupt:
        _remove_download(f.location, mode)
    if corrupt:
        bad = corrupt[0]
        raise WeightsError(
            f"refused download of {comp.name}: {bad.path} does not match the weights lock ({bad.detail}); "
            "the file was deleted",
            fix="retry the pull; if it persists the lock or the hub copy is wrong",
        )
    missing = [f for f in after.files if f.state == MISSING]
    if missing:
        raise WeightsError(
            f"download of {comp.name} incomplete: {missing[0].path} missing in {after.root}",
            fix=f"run `{pull_command(comp, target_dir)}` again",
        )
    return after.root


def update_lock(
    lock_path: Path | None = None,
    *,
    names: Iterable[str] | None = None,
    token: str | bool | None = None,
    output: Path | None = None,
) -> list[str]:
    """Fill in the lock from the hub (online): revision, exact sizes, LFS sha256, git blob ids.

    Pinned revisions stay pinned (the hub confirms them); a null revision becomes the commit `main`
    points at. Files listed with alternatives keep the name the hub has. Returns a list of changes;
    writes the lock (to `output`, default in place) only when something changed.
    """
    lock_path = Path(lock_path) if lock_path is not None else default_lock_path()
    raw = _read_raw_lock(lock_path)
    lock = load_lock(lock_path)
    wanted = [get_component(n, lock).name for n in names] if names else list(lock)
    if hub_offline():
        raise WeightsError(
            "cannot update the weights lock: HF_HUB_OFFLINE is set",
            fix="run `show1 weights lock --update` with network access",
        )
    reason = hub_unreachable()
    if reason is not None:
        raise WeightsError(f"cannot update the weights lock: the hub cannot be reached: {reason}",
                           fix="run `show1 weights lock --update` where there is a network (check a proxy or HF_ENDPOINT)")
    from huggingface_hub import HfApi

    api = HfApi()
    changes: list[str] = []
    for cname in wanted:
        comp = lock[cname]
        entry = raw["components"][cname]
        try:
            info = api.model_info(comp.repo_id, revision=comp.revision or "main", files_metadata=True, token=token)
        except Exception as exc:
            if not _is_hub_failure(exc):
                raise  # a bug, not the network: keep the traceback
            raise _network_error(comp, exc, None, "look up") from exc
        if info.sha and entry.get("revision") != info.sha:
            changes.append(f"{cname}: revision {entry.get('revision')} -> {info.sha}")
            entry["revision"] = info.sha
        if "revision_note" in entry and info.sha:
            del entry["revision_note"]
            changes.append(f"{cname}: revision {info.sha} confirmed on the hub")
        gated = bool(getattr(info, "gated", False))
        if entry.get("gated") != gated:
            changes.append(f"{cname}: gated {entry.get('gated')} -> {gated}")
            entry["gated"] = gated
        siblings = {s.rfilename: s for s in (info.siblings or [])}
        for fentry in entry["files"]:
            candidates = [fentry["path"], *(fentry.get("alternatives") or [])]
            found = next((c for c in candidates if c in siblings), None)
            if found is None:
                raise WeightsError(
                    f"{comp.repo_id}@{info.sha} has no {' or '.join(candidates)}",
                    fix="fix the file list of this component in the weights lock",
                )
            sib = siblings[found]
            if found != fentry["path"]:
                changes.append(f"{cname}: {fentry['path']} -> {found}")
                fentry["path"] = found
            if "alternatives" in fentry:
                del fentry["alternatives"]
                fentry.pop("note", None)
            lfs = sib.lfs
            size = lfs.size if lfs is not None else sib.size
            if size is not None and fentry.get("size") != size:
                changes.append(f"{cname}: {found} size {fentry.get('size')} -> {size}")
                fentry["size"] = size
            if lfs is not None:
                if fentry.get("sha256") != lfs.sha256:
                    changes.append(f"{cname}: {found} sha256 {fentry.get('sha256')} -> {lfs.sha256}")
                    fentry["sha256"] = lfs.sha256
                fentry.pop("sha256_note", None)
            elif sib.blob_id:
                if fentry.get("git_sha1") != sib.blob_id:
                    changes.append(f"{cname}: {found} git blob id -> {sib.blob_id}")
                    fentry["git_sha1"] = sib.blob_id
                if fentry.get("sha256") is None:
                    fentry["sha256_note"] = "small file kept in git, not LFS: checked by its git blob id"
    if changes:
        text = format_lock(raw)
        if json.loads(text) != raw:  # never write something that does not read back the same
            raise WeightsError("internal error: the updated lock does not round-trip; nothing written")
        target = Path(output) if output is not None else lock_path
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        load_lock(target)
    return changes
