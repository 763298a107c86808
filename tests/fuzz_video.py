"""A seeded corpus of corrupted MP4s and the check every one of them must pass.

`corpus(valid, seed)` derives broken versions of one small valid MP4: bit flips, truncations, boxes
(atoms) with their payload zeroed, boxes whose size field claims far more than the file holds, and
garbage spliced in. `python -m tests.fuzz_video DIR` writes the corpus to DIR, opens every file through
`read_video` (the path `show1 upscale`, `interpolate` and `finetune-motion` read their input with) and
prints one JSON line per case: "decoded" (with the frame count), "refused" (a show1 InputError, with its
one-line message) or "defect" (any other exception). It runs as a child process so that the test can
put a time limit on the whole corpus: a hang in the decoder fails the test instead of stalling it.
"""

from __future__ import annotations

import json
import random
import signal
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

# Boxes whose children are boxes (ISO/IEC 14496-12), walked to find every box of the file.
CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"meta", b"ilst"}
SECONDS_PER_CASE = 20


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, bytes]]:
    """(offset, size, type) of every box in data[start:end], depth first."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size < 8 or offset + size > end:
            return
        yield offset, size, kind
        header = 12 if kind == b"meta" else 8  # meta is a full box: version and flags before its children
        if kind in CONTAINER_BOXES:
            yield from boxes(data, offset + header, offset + size)
        offset += size


def corpus(valid: bytes, seed: int) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every corrupted version, the same for a given seed."""
    rng = random.Random(seed)
    for index in range(60):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 24)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        yield f"flip-{index:02d}", bytes(data)
    for index in range(30):
        yield f"truncate-{index:02d}", valid[: rng.randrange(len(valid))]
    for offset, size, kind in boxes(valid):
        name = kind.hex() if not kind.isalnum() else kind.decode()
        yield f"zero-{name}-{offset}", valid[: offset + 8] + bytes(size - 8) + valid[offset + size :]
        for claimed in (size + 1, 0x7FFFFFFF, 0xFFFFFFFF):
            yield f"oversize-{name}-{offset}-{claimed}", valid[:offset] + struct.pack(">I", claimed) + valid[offset + 4 :]
    for index in range(30):
        at = rng.randrange(len(valid))
        yield f"splice-{index:02d}", valid[:at] + rng.randbytes(rng.randint(1, 4096)) + valid[at:]


def check(path: Path) -> dict:
    from show1_cli.errors import InputError
    from show1_cli.video import read_video

    try:
        video = read_video(path)
    except InputError as error:
        return {"outcome": "refused", "message": str(error)}
    except Exception as error:  # noqa: BLE001 - every other exception is what this corpus looks for
        return {"outcome": "defect", "message": f"{type(error).__name__}: {error}"}
    return {"outcome": "decoded", "frames": int(video.frames.shape[0]), "shape": list(video.frames.shape[1:])}


def _timeout(signum, frame):
    raise TimeoutError(f"no answer within {SECONDS_PER_CASE} s")


def main(folder: Path, valid: Path, seed: int) -> None:
    signal.signal(signal.SIGALRM, _timeout)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in corpus(valid.read_bytes(), seed):
        path = folder / f"{name}.mp4"
        path.write_bytes(data)
        signal.alarm(SECONDS_PER_CASE)
        try:
            result = check(path)
        except TimeoutError as error:
            result = {"outcome": "defect", "message": str(error)}
        signal.alarm(0)
        print(json.dumps({"case": name, **result}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
