"""Shared test setup: offline hub, tiny checkpoints written once per session, a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.tiny_checkpoints import write_tiny_weights

# Tests never touch the network; huggingface_hub and transformers read these at call time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with all five tiny components (DIR/<name>/, hub layout) and DIR/weights.lock."""
    return write_tiny_weights(tmp_path_factory.mktemp("tiny-weights"))


@pytest.fixture(scope="module")
def tiny_weights(tiny_weights_dir: Path) -> Iterator[Path]:
    """The tiny checkpoints as the weights of a test module: SHOW1_WEIGHTS_DIR and SHOW1_WEIGHTS_LOCK point
    at them until the module's tests are done (module scope, so module fixtures can run the CLI)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHOW1_WEIGHTS_DIR", str(tiny_weights_dir))
        patch.setenv("SHOW1_WEIGHTS_LOCK", str(tiny_weights_dir / "weights.lock"))
        yield tiny_weights_dir


def run_cli(*args: str | os.PathLike[str]) -> Result:
    """Invoke `show1 ARGS...` in-process; exceptions are caught and kept on the result (result.exception)."""
    from show1_cli.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args])
