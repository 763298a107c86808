"""The weights lock and `show1 weights ...`, offline, on tiny fake weight folders."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from show1_cli import weights as W
from show1_cli.errors import InputError, WeightsError

REPO_ROOT = Path(__file__).resolve().parents[1]

PINNED = {  # REFERENCE.md section 2
    "show-1-base": ("showlab/show-1-base", "02c7cbcec48f841e4b4bdbc972077c8420b1ae11"),
    "show-1-interpolation": ("showlab/show-1-interpolation", "db0295e235766dc9a79dba14b528f0eb7c823dcb"),
    "show-1-sr1": ("showlab/show-1-sr1", "51def10fcf940f078b6c6377565937d5458d77ca"),
    "show-1-sr2": ("showlab/show-1-sr2", "2d1824a622b57748f8a75a3c5d4b111711036103"),
    "IF-II-L-v1.0": ("DeepFloyd/IF-II-L-v1.0", "609476ce702b2d94aff7d1f944dcc54d4f972901"),
}
SR2_UNET_SHA = "ea5deab58ae6ab72ded3d157407d634e49728a7984a447bd99d6cae7567faa75"
REV = PINNED["show-1-sr2"][1]


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Every test: no network, and every cache in a temporary folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", W.WEIGHTS_DIR_ENV, W.LOCK_ENV, "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(W.CACHE_DIR_ENV, str(tmp_path / "show1-cache"))
    monkeypatch.setenv("COLUMNS", "200")


def online(monkeypatch) -> None:
    """Allow the network for a test whose hub calls are stubbed; the reachability probe says the hub answers."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(W, "hub_unreachable", lambda: None)


def invoke(*args: str):
    """Run `show1 weights ARGS` through the main app when it registers the group, else the sub-app."""
    import show1_cli.cli as cli
    from show1_cli.cli import weights as weights_cli

    runner = CliRunner()
    if any(group.name == "weights" for group in cli.app.registered_groups):
        return runner.invoke(cli.app, ["weights", *args])
    return runner.invoke(weights_cli.app, list(args))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


FILES = {
    "model_index.json": b'{"_class_name": "VideoToVideoSDPipeline"}\n',
    "unet/config.json": b'{"in_channels": 4}\n',
    "unet/diffusion_pytorch_model.bin": bytes(range(256)) * 40,
    "vae/config.json": b'{"scaling_factor": 0.18215}\n',  # hash left unknown in the test lock
}


def write_lock(path: Path, contents: dict[str, bytes] = FILES, *, unknown=("vae/config.json",), **extra) -> Path:
    entries = []
    for name, data in contents.items():
        known = name not in unknown
        entries.append({"path": name, "size": len(data) if known else None, "sha256": sha256(data) if known else None})
    comp = {"repo_id": "showlab/show-1-sr2", "revision": REV, "gated": False, "purpose": "test", "files": entries}
    comp.update(extra)
    gated = {
        "repo_id": "DeepFloyd/IF-II-L-v1.0",
        "revision": PINNED["IF-II-L-v1.0"][1],
        "gated": True,
        "optional": True,
        "purpose": "first frame",
        "files": [{"path": "model_index.json", "size": None, "sha256": None}],
    }
    path.write_text(json.dumps({"_about": "test lock", "format": 1, "components": {"show-1-sr2": comp, "IF-II-L-v1.0": gated}}))
    return path


@pytest.fixture
def test_lock(tmp_path, monkeypatch) -> Path:
    path = write_lock(tmp_path / "test.lock")
    monkeypatch.setenv(W.LOCK_ENV, str(path))
    return path


def make_folder(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    # Same size, and even the same mtime: only the hash can tell.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    error_lines = [line for line in lines if "error" in line.lower()]
    assert len(error_lines) == 1, result.output
    return error_lines[0]


# ---------------------------------------------------------------------------------------------- the lock


def test_shipped_lock_pins_the_reference_revisions():
    lock = W.load_lock()
    assert list(lock) == list(W.COMPONENTS)
    for name, (repo, rev) in PINNED.items():
        assert lock[name].repo_id == repo
        assert lock[name].revision == rev
        assert lock[name].gated is (name == "IF-II-L-v1.0")
    assert lock["IF-II-L-v1.0"].optional


def test_shipped_lock_invents_nothing():
    lock = W.load_lock()
    hashes = {(c.name, f.path): f.sha256 for c in lock.values() for f in c.files if f.sha256}
    assert hashes == {("show-1-sr2", "unet/diffusion_pytorch_model.bin"): SR2_UNET_SHA}
    # Only rounded sizes are known here: they are notes, never sizes.
    assert all(f.size is None for c in lock.values() for f in c.files)
    assert next(f for f in lock["show-1-base"].files if f.path == "unet/diffusion_pytorch_model.bin").approx == "3.45 GB"
    raw = json.loads((REPO_ROOT / "weights.lock").read_text())
    assert "_about" in raw
    for comp in raw["components"].values():
        for entry in comp["files"]:
            if entry["sha256"] is None:
                assert "lock --update" in entry["sha256_note"]


def test_shipped_lock_file_lists():
    lock = W.load_lock()
    paths = {name: {f.path for f in comp.files} for name, comp in lock.items()}
    assert {
        "text_encoder/pytorch_model-00001-of-00002.bin",
        "text_encoder/pytorch_model-00002-of-00002.bin",
        "text_encoder/pytorch_model.bin.index.json",
        "tokenizer/spiece.model",
        "unet/diffusion_pytorch_model.bin",
    } <= paths["show-1-base"]
    assert "feature_extractor/preprocessor_config.json" not in paths["show-1-base"]
    # The T5 of show-1-base serves every pixel stage.
    for name in ("show-1-interpolation", "show-1-sr1", "IF-II-L-v1.0"):
        assert not any(p.startswith(("text_encoder/", "tokenizer/")) for p in paths[name]), name
    assert "image_noising_scheduler/scheduler_config.json" in paths["show-1-sr1"]
    assert {"vae/diffusion_pytorch_model.bin", "tokenizer/merges.txt", "text_encoder/pytorch_model.bin"} <= paths["show-1-sr2"]
    if_unet = next(f for f in lock["IF-II-L-v1.0"].files if f.path.startswith("unet/diffusion_pytorch_model"))
    assert if_unet.path.endswith(".safetensors") and if_unet.alternatives == ("unet/diffusion_pytorch_model.bin",)


def test_shipped_lock_is_in_canonical_format():
    text = (REPO_ROOT / "weights.lock").read_text()
    assert W.format_lock(json.loads(text)) == text


def test_default_lock_follows_env(test_lock):
    assert W.default_lock_path() == test_lock
    assert list(W.load_lock()) == ["show-1-sr2", "IF-II-L-v1.0"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"revision": "main"}, "40-digit"),
        ({"files": [{"path": "a.bin", "size": 1, "sha256": "abc"}]}, "sha256"),
        ({"files": [{"path": "../a.bin", "size": 1, "sha256": None}]}, "relative path"),
        ({"files": [{"path": "a.bin", "size": -1, "sha256": None}]}, "size"),
        ({"files": []}, "non-empty"),
        ({"repo_id": "show-1-sr2"}, "owner/name"),
    ],
)
def test_bad_lock_is_refused(tmp_path, change, message):
    path = write_lock(tmp_path / "bad.lock", **change)
    with pytest.raises(WeightsError, match=message):
        W.load_lock(path)


def test_missing_or_broken_lock(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        W.load_lock(tmp_path / "nope.lock")
    (tmp_path / "broken.lock").write_text("{not json")
    with pytest.raises(WeightsError, match="not JSON"):
        W.load_lock(tmp_path / "broken.lock")


def test_unknown_component(test_lock):
    with pytest.raises(InputError, match="show-1-sr2"):
        W.get_component("show-2")
    assert W.get_component("showlab/show-1-sr2").name == "show-1-sr2"
    result = invoke("path", "show-2")
    assert result.exit_code == 2


def test_weights_dir_option_beats_env(monkeypatch, tmp_path):
    assert W.weights_dir_from_env(None) is None
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(tmp_path / "env"))
    assert W.weights_dir_from_env(None) == tmp_path / "env"
    assert W.weights_dir_from_env(tmp_path / "opt") == tmp_path / "opt"


# ---------------------------------------------------------------------------------------------- local folder


def test_verify_good_then_corrupt(test_lock, tmp_path):
    wdir = tmp_path / "weights"
    make_folder(wdir / "show-1-sr2")

    result = invoke("verify", "show-1-sr2", "--weights-dir", str(wdir))
    assert result.exit_code == 0, result.output
    assert "ok         unet/diffusion_pytorch_model.bin" in result.output
    assert "unverified vae/config.json (hash unknown" in result.output
    assert (wdir / "show-1-sr2" / W.STAMP_NAME).is_file()

    result = invoke("list", "--weights-dir", str(wdir))
    assert result.exit_code == 0, result.output
    assert "vae/config.json" not in result.output  # unverified files are summarised, not listed
    assert "show-1-sr2: 1 file(s) unverified: hash unknown, run `show1 weights lock --update`" in result.output
    assert "IF-II-L-v1.0: missing; get it with `show1 weights pull IF-II-L-v1.0 --dir" in result.output
    assert "optional and gated" in result.output
    assert W.resolve_component("show-1-sr2", wdir) == wdir / "show-1-sr2"

    flip_one_byte(wdir / "show-1-sr2" / "unet" / "diffusion_pytorch_model.bin")
    # The stamp no longer matches: `list` (which hashes nothing) says so.
    result = invoke("list", "--weights-dir", str(wdir))
    assert "show-1-sr2/unet/diffusion_pytorch_model.bin: present (not hashed since it last changed" in result.output

    result = invoke("verify", "--weights-dir", str(wdir))
    assert result.exit_code == 1, result.output
    assert "corrupt    unet/diffusion_pytorch_model.bin" in result.output
    assert "corrupt file(s), refused: show-1-sr2/unet/diffusion_pytorch_model.bin" in result.output
    assert "IF-II-L-v1.0: not present" in result.output  # unnamed and absent: skipped, not an error

    result = invoke("list", "--weights-dir", str(wdir))
    assert result.exit_code == 0
    assert "show-1-sr2/unet/diffusion_pytorch_model.bin: corrupt (sha256 " in result.output
    assert "corrupt" in result.output.split("show-1-sr2/unet")[0]  # the table's status column too

    with pytest.raises(WeightsError, match="refusing show-1-sr2") as info:
        W.resolve_component("show-1-sr2", wdir)
    assert f"show1 weights pull show-1-sr2 --dir {wdir}" in str(info.value)
    assert invoke("path", "show-1-sr2", "--weights-dir", str(wdir)).exit_code == 1


def test_resolve_hashes_unverified_files_once_and_refuses_a_corrupt_one(test_lock, tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    make_folder(wdir / "show-1-sr2")
    flip_one_byte(wdir / "show-1-sr2" / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(WeightsError, match="does not match the weights lock"):
        W.resolve_component("show-1-sr2", wdir)

    make_folder(wdir / "show-1-sr2")  # repaired
    calls = []
    real_hash = W.hash_file
    monkeypatch.setattr(W, "hash_file", lambda p, **kw: calls.append(p) or real_hash(p, **kw))
    assert W.resolve_component("show-1-sr2", wdir) == wdir / "show-1-sr2"
    assert len(calls) == 3  # the files whose hash is known
    W.resolve_component("show-1-sr2", wdir)
    assert len(calls) == 3  # second load: stamps only


def test_size_mismatch_is_corrupt_without_hashing(test_lock, tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    make_folder(wdir / "show-1-sr2")
    (wdir / "show-1-sr2" / "unet" / "config.json").write_bytes(b"{}")
    monkeypatch.setattr(W, "hash_file", lambda *a, **k: pytest.fail("hashed"))
    status = W.component_status("show-1-sr2", wdir)
    bad = next(f for f in status.files if f.path == "unet/config.json")
    assert bad.state == W.CORRUPT and "size 2 bytes" in bad.detail
    assert status.state == W.CORRUPT


def test_missing_file_in_local_folder(test_lock, tmp_path):
    wdir = tmp_path / "weights"
    make_folder(wdir / "show-1-sr2")
    (wdir / "show-1-sr2" / "unet" / "config.json").unlink()
    result = invoke("list", "--weights-dir", str(wdir))
    assert "show-1-sr2/unet/config.json: missing (not found)" in result.output
    result = invoke("verify", "show-1-sr2", "--weights-dir", str(wdir))
    assert result.exit_code == 1
    with pytest.raises(WeightsError, match=r"incomplete .*1 of 4 files missing \(unet/config.json\)"):
        W.resolve_component("show-1-sr2", wdir)


def test_weights_dir_from_environment(test_lock, tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    make_folder(wdir / "show-1-sr2")
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(wdir))
    result = invoke("path", "show-1-sr2")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(wdir / "show-1-sr2")
    result = invoke("path")
    assert result.output.splitlines() == [
        f"show-1-sr2\t{wdir / 'show-1-sr2'}\tpresent",
        f"IF-II-L-v1.0\t{wdir / 'IF-II-L-v1.0'}\tmissing",
    ]


# ---------------------------------------------------------------------------------------------- messages


def test_offline_missing_weights_message_cache_mode():
    result = invoke("path", "show-1-base")
    assert result.exit_code == 1
    line = one_line_error(result)
    cache = Path(os.environ["HF_HOME"]) / "hub" / "models--showlab--show-1-base" / "snapshots" / PINNED["show-1-base"][1]
    assert "show-1-base" in line
    assert str(cache) in line
    assert "`show1 weights pull show-1-base`" in line


def test_offline_missing_weights_message_local_folder(tmp_path):
    wdir = tmp_path / "my weights"
    result = invoke("path", "show-1-sr1", "--weights-dir", str(wdir))
    assert result.exit_code == 1
    line = one_line_error(result)
    assert str(wdir / "show-1-sr1") in line
    assert f"`show1 weights pull show-1-sr1 --dir '{wdir}'`" in line


def test_gated_message():
    with pytest.raises(WeightsError) as info:
        W.resolve_component("IF-II-L-v1.0")
    text = str(info.value)
    assert "\n" not in text
    assert "`show1 weights pull IF-II-L-v1.0`" in text
    assert "https://huggingface.co/DeepFloyd/IF-II-L-v1.0" in text
    assert "hf auth login" in text and "HF_TOKEN" in text
    line = one_line_error(invoke("path", "IF-II-L-v1.0"))
    assert "accept its licence at https://huggingface.co/DeepFloyd/IF-II-L-v1.0" in line


def test_pull_offline_fails_clearly(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("network used"))
    result = invoke("pull", "show-1-base", "--dir", str(tmp_path / "w"))
    assert result.exit_code == 1
    assert "HF_HUB_OFFLINE is set" in one_line_error(result)


def test_lock_update_offline_fails_clearly():
    result = invoke("lock", "--update")
    assert result.exit_code == 1
    assert "HF_HUB_OFFLINE" in one_line_error(result)


def test_an_unreachable_hub_is_one_line_with_both_fixes_before_any_download(tmp_path):
    # A closed local port stands for a machine without a network; nothing here may reach the real hub.
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", W.WEIGHTS_DIR_ENV, W.LOCK_ENV)}
    env.update({"HF_ENDPOINT": "http://127.0.0.1:9", "NO_COLOR": "1", "COLUMNS": "200",
                "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])})

    def show1(*args):
        done = subprocess.run([sys.executable, "-m", "show1_cli", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("show-1-base: ")]
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        return done.returncode, lines[0]

    code, line = show1("weights", "pull", "show-1-base", "--dir", str(tmp_path / "weights"))
    assert code == 1 and "the hub (http://127.0.0.1:9) cannot be reached" in line
    assert "`show1 weights pull show-1-base --dir" in line and "--weights-dir DIR" in line
    assert not (tmp_path / "weights").exists()
    code, line = show1("generate", "a cat", "-o", "cat.mp4", "--weights-dir", str(tmp_path / "weights"))
    assert code == 1 and "weights for show-1-base" in line and "not found" in line
    assert "show1 weights pull show-1-base" in line and "--weights-dir DIR" in line
    assert not (tmp_path / "cat.mp4").exists()


def test_an_unreachable_hub_points_at_the_micro_cascade_when_it_is_shipped(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(W, "hub_unreachable", lambda: "Connection refused")
    monkeypatch.setattr(W, "micro_available", lambda: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("download tried"))
    result = invoke("pull", "show-1-base")
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "cannot be reached: Connection refused" in line and "--weights-dir DIR" in line and "--preset micro" in line


def test_lock_command_reports_unknowns():
    result = invoke("lock")
    assert result.exit_code == 0
    assert "show-1-sr2: showlab/show-1-sr2@" + REV in result.output
    assert "1 hashes known" in result.output
    assert "run `show1 weights lock --update`" in result.output


# ---------------------------------------------------------------------------------------------- cache mode


def test_cache_mode_resolves_the_pinned_snapshot(test_lock, tmp_path):
    snapshot = Path(os.environ["HF_HOME"]) / "hub" / "models--showlab--show-1-sr2" / "snapshots" / REV
    make_folder(snapshot)
    assert W.resolve_component("show-1-sr2") == snapshot
    stamps = list((tmp_path / "show1-cache" / "verified").iterdir())
    assert [p.name for p in stamps] == [f"showlab--show-1-sr2@{REV}.json"]
    assert W.component_status("show-1-sr2").state == W.UNVERIFIED  # vae/config.json has no known hash
    # A different revision in the cache does not count.
    other = snapshot.parent / ("0" * 40)
    snapshot.rename(other)
    with pytest.raises(WeightsError, match="not found in the huggingface_hub cache"):
        W.resolve_component("show-1-sr2")


# ---------------------------------------------------------------------------------------------- network, mocked


def fake_download(files: dict[str, bytes], calls: list):
    def download(repo_id, filename, *, revision, token, local_dir=None, cache_dir=None, force_download=False):
        calls.append((repo_id, filename, revision, force_download))
        if filename not in files:
            from huggingface_hub.utils import EntryNotFoundError

            raise EntryNotFoundError(f"{filename} not found")
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[filename])
        return str(target)

    return download


def test_pull_downloads_exactly_the_locked_files_and_refuses_a_bad_one(test_lock, tmp_path, monkeypatch):
    import huggingface_hub

    online(monkeypatch)
    calls: list = []
    bad = dict(FILES)
    bad["unet/diffusion_pytorch_model.bin"] = b"x" * len(FILES["unet/diffusion_pytorch_model.bin"])
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download(bad, calls))
    wdir = tmp_path / "weights"
    result = invoke("pull", "show-1-sr2", "--dir", str(wdir))
    assert result.exit_code == 1
    assert "refused download of show-1-sr2: unet/diffusion_pytorch_model.bin" in one_line_error(result)
    assert not (wdir / "show-1-sr2" / "unet" / "diffusion_pytorch_model.bin").exists()
    assert sorted(c[1] for c in calls) == sorted(FILES)
    assert {c[2] for c in calls} == {REV}

    calls.clear()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download(FILES, calls))
    result = invoke("pull", "show-1-sr2", "--dir", str(wdir))
    assert result.exit_code == 0, result.output
    assert W.component_status("show-1-sr2", wdir).state == W.UNVERIFIED
    assert all(f.state == W.VERIFIED for f in W.component_status("show-1-sr2", wdir).files if f.path != "vae/config.json")
    calls.clear()
    assert invoke("pull", "show-1-sr2", "--dir", str(wdir)).exit_code == 0
    assert [c[1] for c in calls] == ["vae/config.json"]  # verified files are not fetched again


def test_lock_update_fills_in_from_hub_metadata(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.hf_api import BlobLfsInfo, RepoSibling

    online(monkeypatch)
    unet = FILES["unet/diffusion_pytorch_model.bin"]
    files = {
        "model_index.json": {"path": "model_index.json", "size": None, "sha256": None},
        "unet": {"path": "unet/w.safetensors", "size": None, "sha256": None, "alternatives": ["unet/diffusion_pytorch_model.bin"]},
    }
    raw = {"_about": "t", "format": 1, "components": {"show-1-sr2": {
        "repo_id": "showlab/show-1-sr2", "revision": None, "gated": False, "purpose": "t",
        "files": list(files.values())}}}
    lock_path = tmp_path / "w.lock"
    lock_path.write_text(json.dumps(raw))

    class Info:
        sha = REV
        gated = False
        siblings = [
            RepoSibling(
                "model_index.json", size=len(FILES["model_index.json"]), blob_id=git_blob(FILES["model_index.json"])
            ),
            RepoSibling("unet/diffusion_pytorch_model.bin", size=len(unet), blob_id="0" * 40,
                        lfs=BlobLfsInfo(size=len(unet), sha256=sha256(unet), pointer_size=130)),
        ]

    seen = {}

    def model_info(self, repo_id, *, revision=None, files_metadata=False, token=None):
        seen.update(repo_id=repo_id, revision=revision, files_metadata=files_metadata)
        return Info()

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    changes = W.update_lock(lock_path)
    assert seen == {"repo_id": "showlab/show-1-sr2", "revision": "main", "files_metadata": True}
    assert any("revision None -> " + REV in c for c in changes)
    comp = W.load_lock(lock_path)["show-1-sr2"]
    assert comp.revision == REV
    by_path = {f.path: f for f in comp.files}
    assert set(by_path) == {"model_index.json", "unet/diffusion_pytorch_model.bin"}
    assert by_path["unet/diffusion_pytorch_model.bin"].sha256 == sha256(unet)
    assert by_path["unet/diffusion_pytorch_model.bin"].size == len(unet)
    assert by_path["model_index.json"].sha256 is None
    assert by_path["model_index.json"].git_sha1 == git_blob(FILES["model_index.json"])
    assert lock_path.read_text() == W.format_lock(json.loads(lock_path.read_text()))
    assert W.update_lock(lock_path) == []  # nothing left to fill in

    # A small file checked by its git blob id.
    wdir = tmp_path / "weights"
    make_folder(wdir / "show-1-sr2", {k: FILES[k] for k in ("model_index.json", "unet/diffusion_pytorch_model.bin")})
    lock = W.load_lock(lock_path)
    assert W.verify_component("show-1-sr2", wdir, lock=lock) == []
    (wdir / "show-1-sr2" / "model_index.json").write_bytes(FILES["model_index.json"].upper())
    problems = W.verify_component("show-1-sr2", wdir, lock=lock)
    assert [(p.path, p.state) for p in problems] == [("model_index.json", W.CORRUPT)]
    assert "git blob id" in problems[0].detail


def hub_error(cls, message: str):
    """A huggingface_hub error without an HTTP response (their constructors differ between releases)."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


def test_pull_gated_without_access(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import GatedRepoError

    online(monkeypatch)

    def download(*args, **kwargs):
        raise hub_error(GatedRepoError, "403 Client Error. Access to model DeepFloyd/IF-II-L-v1.0 is restricted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    result = invoke("pull", "IF-II-L-v1.0", "--dir", str(tmp_path / "w"))
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "access to DeepFloyd/IF-II-L-v1.0 is gated" in line
    assert "https://huggingface.co/DeepFloyd/IF-II-L-v1.0" in line and "hf auth login" in line


def test_pull_without_network(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    online(monkeypatch)
    calls = []

    def download(*args, **kwargs):
        calls.append(args)
        raise LocalEntryNotFoundError("Connection error, and the file is not in the local cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    result = invoke("pull", "IF-II-L-v1.0")
    assert result.exit_code == 1
    assert "the hub (https://huggingface.co) cannot be reached" in one_line_error(result)
    assert len(calls) == 1  # no-network is not mistaken for "file not on the hub"


def test_pull_takes_the_alternative_name_the_hub_has(tmp_path, monkeypatch):
    import huggingface_hub

    online(monkeypatch)
    hub = {
        "model_index.json": b"{}",
        "scheduler/scheduler_config.json": b"{}",
        "image_noising_scheduler/scheduler_config.json": b"{}",
        "unet/config.json": b"{}",
        "unet/diffusion_pytorch_model.bin": b"weights",
    }
    calls: list = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download(hub, calls))
    wdir = tmp_path / "weights"
    assert W.resolve_optional_component("IF-II-L-v1.0", wdir) is None
    root = W.pull_component("IF-II-L-v1.0", wdir)
    assert root == wdir / "IF-II-L-v1.0"
    tried = [c[1] for c in calls if c[1].startswith("unet/diffusion")]
    assert tried == ["unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"]
    assert W.resolve_optional_component("IF-II-L-v1.0", wdir) == root
    (root / "unet" / "config.json").unlink()
    with pytest.raises(WeightsError, match="incomplete"):
        W.resolve_optional_component("IF-II-L-v1.0", wdir)


def test_read_only_weights_folder_keeps_stamps_in_the_show1_cache(test_lock, tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    make_folder(wdir / "show-1-sr2")
    (wdir / "show-1-sr2" / W.STAMP_NAME).mkdir()  # cannot be written as a file
    calls = []
    real_hash = W.hash_file
    monkeypatch.setattr(W, "hash_file", lambda p, **kw: calls.append(p) or real_hash(p, **kw))
    W.resolve_component("show-1-sr2", wdir)
    W.resolve_component("show-1-sr2", wdir)
    assert len(calls) == 3
    assert any((tmp_path / "show1-cache" / "verified").glob("show-1-sr2-dir-*.json"))


def test_pull_into_the_hub_cache_refuses_and_removes_a_bad_blob(test_lock, tmp_path, monkeypatch):
    import huggingface_hub

    online(monkeypatch)
    seen = []

    def download(repo_id, filename, *, revision, token, cache_dir, force_download=False):
        """Lay files out as huggingface_hub does: blobs plus snapshot links."""
        seen.append(cache_dir)
        data = FILES[filename]
        if filename == "unet/config.json":
            data = data.upper()  # same size, different bytes
        repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
        blob = repo / "blobs" / sha256(data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / revision / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(blob)
        return str(link)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(WeightsError, match="refused download of show-1-sr2: unet/config.json"):
        W.pull_component("show-1-sr2")
    cache = Path(os.environ["HF_HOME"]) / "hub"
    assert set(seen) == {cache}
    snapshot = cache / "models--showlab--show-1-sr2" / "snapshots" / REV
    assert not (snapshot / "unet" / "config.json").exists()
    assert not (snapshot.parents[1] / "blobs" / sha256(FILES["unet/config.json"].upper())).exists()
    assert (snapshot / "unet" / "diffusion_pytorch_model.bin").is_file()
