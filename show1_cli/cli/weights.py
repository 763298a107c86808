"""`show1 weights ...`: what the lock pins, what is present, downloading and checking it.

The commands raise `Show1Error`s; the main CLI prints them as one line and exits with their code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from show1_cli import weights as W
from show1_cli.cli.app import DebugOption, WeightsDirOption, command
from show1_cli.cli.help import Typer
from show1_cli.errors import WeightsError

app = Typer(
    help=(
        "Model weights: list what is present, pull it from the hub at the pinned revisions, verify "
        "hashes, print paths, update the lock. Local folders: --weights-dir DIR or SHOW1_WEIGHTS_DIR "
        "(DIR/<component>/ laid out as the hub repository); otherwise the huggingface_hub cache."
    ),
    no_args_is_help=True,
)

Names = Annotated[
    list[str] | None,
    typer.Argument(metavar="NAME", help="Components (default: all in the lock).", show_default=False),
]
PullNames = Annotated[
    list[str] | None,
    typer.Argument(metavar="NAME", help="Components (default: all but the optional IF-II-L-v1.0).", show_default=False),
]

MicroOption = Annotated[
    bool, typer.Option("--micro", help="The micro cascade shipped inside show1 (the toy world) instead of the hub weights.")
]
MICRO_NOTE = ("show1 also ships a micro cascade trained on a toy world of coloured shapes (offline, CPU, seconds): "
              "`show1 generate \"a red circle moving right on a black background\" -o demo.mp4 --preset micro`; "
              "`show1 weights list --micro` shows it")


def _weights_and_lock(micro: bool, weights_dir: Path | None) -> tuple[Path | None, dict[str, W.Component]]:
    source = W.micro_weights() if micro else W.WeightSource(W.weights_dir_from_env(weights_dir))
    return source.weights_dir, source.lock()


_STATE_STYLE = {
    W.VERIFIED: "green",
    W.UNVERIFIED: "yellow",
    W.PRESENT: "yellow",
    W.MISSING: "red",
    W.CORRUPT: "bold red",
}


def _targets(lock: dict[str, W.Component], names: list[str] | None) -> list[W.Component]:
    if not names:
        return list(lock.values())
    out: list[W.Component] = []
    for name in names:
        comp = W.get_component(name, lock)
        if comp not in out:
            out.append(comp)
    return out


def _source(weights_dir: Path | None) -> str:
    if weights_dir is not None:
        return f"local folder {weights_dir}"
    return f"huggingface_hub cache {W.hub_cache_dir()}"


def _optional_note(lock: dict[str, W.Component]) -> str | None:
    gated = [c for c in lock.values() if c.optional]
    if not gated:
        return None
    c = gated[0]
    return (
        f"{c.name} is optional{' and gated' if c.gated else ''}: it improves the first frame of the "
        "super-resolution stage; without it a fallback runs."
        + (f" To use it, accept the licence at {c.url}, run `hf auth login` (or set HF_TOKEN) and "
           f"`show1 weights pull {c.name}`." if c.gated else "")
    )


@app.command("list")
@command
def list_(
    names: Names = None,
    weights_dir: WeightsDirOption = None,
    files: Annotated[bool, typer.Option("--files", help="Show every file, not only the problems.")] = False,
    micro: MicroOption = False,
    debug: DebugOption = False,
) -> None:
    """Show each component: purpose, pinned revision, status (present, missing, corrupt, unverified), location.

    Cheap: checks presence, sizes and the hashes recorded by `verify`; hashes nothing.

    Examples:

      show1 weights list --weights-dir /data/show1-weights

      show1 weights list --micro
    """
    wd, lock = _weights_and_lock(micro, weights_dir)
    statuses = [W.component_status(c.name, wd, lock=lock) for c in _targets(lock, names)]

    base = wd if wd is not None else W.hub_cache_dir()
    table = Table(title=f"Show-1 weights in the {_source(wd)}")
    table.add_column("component", no_wrap=True)
    table.add_column("purpose", ratio=2)
    table.add_column("revision", no_wrap=True)
    table.add_column("status", ratio=1)
    table.add_column("location (under the folder above)", ratio=1, overflow="fold")
    for st in statuses:
        comp = st.component
        style = _STATE_STYLE.get(st.state, "")
        flags = ", ".join(f for f in ("gated" if comp.gated else "", "optional" if comp.optional else "") if f)
        try:
            where = str(st.root.relative_to(base))
        except ValueError:
            where = str(st.root)
        table.add_row(
            comp.name + (f"\n({flags})" if flags else ""),
            comp.purpose,
            comp.revision[:12] if comp.revision else "unknown",
            f"[{style}]{st.state}[/]\n{st.summary()}",
            where,
        )
    Console().print(table)

    # Plain, unwrapped lines for scripts and for reading the details.
    for st in statuses:
        comp = st.component
        if not st.any_present:
            typer.echo(f"{comp.name}: missing; get it with `{W.pull_command(comp, wd)}`")
            continue
        shown = st.files if files else [f for f in st.files if f.state not in (W.VERIFIED, W.UNVERIFIED)]
        for f in shown:
            typer.echo(f"{comp.name}/{f.path}: {f.state} ({f.detail})")
        unverified = [f for f in st.files if f.state == W.UNVERIFIED]
        if unverified and not files:
            typer.echo(
                f"{comp.name}: {len(unverified)} file(s) unverified: hash unknown, "
                "run `show1 weights lock --update`"
            )
    note = _optional_note(lock)
    if note:
        typer.echo(note)
    if not micro and W.micro_available():
        typer.echo(MICRO_NOTE)


@app.command()
@command
def verify(names: Names = None, weights_dir: WeightsDirOption = None, micro: MicroOption = False, debug: DebugOption = False) -> None:
    """Hash the present files and compare them with the lock; exit 1 if any is corrupt.

    Records the result so that later runs only compare stamps. Without NAME, components not present
    at all are skipped; a named component that is missing is an error.

    Examples:

      show1 weights verify show-1-sr2

      show1 weights verify --micro
    """
    wd, lock = _weights_and_lock(micro, weights_dir)
    corrupt: list[tuple[W.Component, W.FileStatus]] = []
    missing: list[tuple[W.Component, W.FileStatus]] = []
    checked = 0
    for comp in _targets(lock, names):
        before = W.component_status(comp.name, wd, lock=lock)
        if not names and not before.any_present:
            typer.echo(f"{comp.name}: not present in {before.root}, skipped")
            continue
        checked += 1
        typer.echo(f"{comp.name} ({before.root}):")
        W.verify_component(comp.name, wd, lock=lock, progress=lambda m: typer.echo(f"  {m}", err=True))
        after = W.component_status(comp.name, wd, lock=lock)
        for f in after.files:
            label = "ok" if f.state == W.VERIFIED else f.state
            typer.echo(f"  {label:<10} {f.path}" + ("" if f.state == W.VERIFIED else f" ({f.detail})"))
            if f.state == W.CORRUPT:
                corrupt.append((comp, f))
            elif f.state == W.MISSING:
                missing.append((comp, f))
    if corrupt:
        first_comp = corrupt[0][0]
        listed = ", ".join(f"{c.name}/{f.path}" for c, f in corrupt)
        raise WeightsError(
            f"{len(corrupt)} corrupt file(s), refused: {listed}",
            fix=f"run `{W.pull_command(first_comp, wd)}` to fetch them again",
        )
    if missing and names:
        comp, f = missing[0]
        raise WeightsError(
            f"{len(missing)} file(s) missing, e.g. {comp.name}/{f.path} in {f.location.parent}",
            fix=f"run `{W.pull_command(comp, wd)}`",
        )
    if checked == 0:
        raise WeightsError(
            f"no weights to verify: no component is present in the {_source(wd)}",
            fix=f"run `show1 weights pull{'' if wd is None else ' --dir ' + str(wd)}`",
        )


@app.command()
@command
def path(names: Names = None, weights_dir: WeightsDirOption = None, debug: DebugOption = False) -> None:
    """Print where components resolve, one per line.

    With NAME: just the folder of each (error if missing or corrupt). Without: NAME<TAB>FOLDER<TAB>STATE
    for every component in the lock, present or not.

    Example: show1 weights path show-1-base
    """
    wd = W.weights_dir_from_env(weights_dir)
    lock = W.load_lock()
    if names:
        for comp in _targets(lock, names):
            typer.echo(str(W.resolve_component(comp.name, wd, lock=lock, hash_unchecked=False)))
        return
    for comp in lock.values():
        st = W.component_status(comp.name, wd, lock=lock)
        typer.echo(f"{comp.name}\t{st.root}\t{st.state}")


@app.command()
@command
def pull(
    names: PullNames = None,
    dir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            "--weights-dir",
            envvar=W.WEIGHTS_DIR_ENV,
            file_okay=False,
            help="Download into DIR/<component>/ (a plain folder) instead of the huggingface_hub cache.",
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="Hub token (default: HF_TOKEN or `hf auth login`).")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Download exactly the locked files at the pinned revisions, then check their hashes.

    Without NAME: every non-optional component (IF-II-L-v1.0 is optional and gated: name it).

    Example: show1 weights pull --dir /data/show1-weights
    """
    wd = W.weights_dir_from_env(dir)
    lock = W.load_lock()
    targets = _targets(lock, names) if names else [c for c in lock.values() if not c.optional]
    for comp in targets:
        rev = comp.revision[:12] if comp.revision else "main"
        typer.echo(f"{comp.name}: {comp.repo_id}@{rev} -> {_source(wd)}", err=True)
        root = W.pull_component(comp.name, wd, token=token, lock=lock, progress=lambda m: typer.echo(f"  {m}", err=True))
        typer.echo(f"{comp.name}: ready at {root}")
    if not names:
        note = _optional_note(lock)
        if note:
            typer.echo(note)


@app.command("lock")
@command
def lock_(
    names: Names = None,
    update: Annotated[
        bool, typer.Option("--update", help="Fill in revisions, sizes and hashes from the hub (online).")
    ] = False,
    token: Annotated[str | None, typer.Option("--token", help="Hub token for gated repositories.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help="Write the updated (or --local) lock here.")
    ] = None,
    local: Annotated[
        Path | None, typer.Option("--local", metavar="DIR", file_okay=False,
                                  help="Pin every file of the components in DIR/<name>/ (your own trained weights).")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Show what the weights lock pins and what it does not know yet; --update fills it in (online).

    --local DIR writes a lock for weights of your own (for example `show1 train` outputs copied into
    DIR/show-1-base/ ...): use them with --weights-dir DIR and SHOW1_WEIGHTS_LOCK=DIR/weights.lock.

    Examples:

      show1 weights lock --update

      show1 weights lock --local my-weights/
    """
    if local is not None:
        from show1_cli.training.lock import write_folder_lock

        purposes = {name: comp.purpose for name, comp in W.load_lock().items()}
        target = write_folder_lock(local, output or local / "weights.lock", owner="local", purposes=purposes,
                                   about=[f"Written by `show1 weights lock --local {local}`: every file pinned by size and sha256."])
        typer.echo(f"wrote {target}; use --weights-dir {local} with SHOW1_WEIGHTS_LOCK={target}")
        return
    lock_path = W.default_lock_path()
    if update:
        changes = W.update_lock(lock_path, names=names, token=token, output=output)
        for change in changes:
            typer.echo(change)
        where = output or lock_path
        typer.echo(f"updated {where}" if changes else f"{lock_path} is already up to date")
        return
    lock = W.load_lock(lock_path)
    typer.echo(f"lock: {lock_path}")
    incomplete = False
    for comp in _targets(lock, names):
        sizes = sum(f.size is not None for f in comp.files)
        hashes = sum(f.hash_known for f in comp.files)
        unsettled = sum(bool(f.alternatives) for f in comp.files)
        rev = comp.revision or "unknown"
        line = (
            f"{comp.name}: {comp.repo_id}@{rev}{' (gated)' if comp.gated else ''}, {len(comp.files)} files, "
            f"{sizes} exact sizes, {hashes} hashes known"
        )
        if unsettled:
            line += f", {unsettled} file name(s) not settled"
        if comp.revision_note:
            line += f"; revision: {comp.revision_note}"
        typer.echo(line)
        incomplete |= sizes < len(comp.files) or hashes < len(comp.files) or bool(unsettled) or not comp.revision
    if incomplete:
        typer.echo("unknown values stay null; run `show1 weights lock --update` (online) to fill them in")
