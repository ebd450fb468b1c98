"""The run directory: resolved config, journal, atomic checkpoints, final state, report.

Layout:
    config.json              the fully resolved run config (what `--resume` reloads)
    journal.sqlite           plans, per-presentation and per-epoch metrics, events
    checkpoints/ckpt-<pos>.npz  controller state (+ backend snapshot) at a position
    final.npz                final conductances, weights, pulse counts, stuck mask
    report.md, report.json, *.png

    run.lock                 the lock of the process using the run (pid, host, start time)

Every file is written to a temporary name, fsynced and renamed, then the directory is
fsynced, so a kill leaves either the old or the new file, never half of one. Checkpoints hold
no pickles: arrays go in the npz, everything else (random generator states, positions) in a
JSON entry, so loading a run never executes code from it.

A process that creates or opens a run holds an OS lock on run.lock (`fcntl.flock`) until it
releases the run or ends, however it ends (the kernel drops the lock of a dead process, so
there is never a stale lock to clean up). A second process on the same run is told which
process holds it instead of meeting the first one's writes in the journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import socket
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from protocols.crashpoints import crash_point
from protocols.errors import InputError
from protocols.loading import MAX_DOCUMENT_BYTES, parse_document, read_bytes, read_text

_CKPT = re.compile(r"^ckpt-(\d{10})\.npz$")
#: Temporary files of `write_atomic` (`.<name>.<random>.tmp`); a killed write leaves one.
TMP_SUFFIX = ".tmp"
_TMP = re.compile(r"^\..+\.tmp$")
_META_KEY = "__meta__"
KEEP_CHECKPOINTS = 2


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class RunDirError(InputError):
    """The run directory cannot be created, written or read."""


class RunInUse(RunDirError):
    """Another process holds the run directory's lock."""


LOCK_NAME = "run.lock"
#: Largest .npz file read (a checkpoint of a 2048 x 4096 array is a few hundred MiB).
MAX_NPZ_BYTES = 1 << 32
#: Largest .npz member accepted (a 2048 x 4096 float64 array is 64 MiB): no zip bomb.
MAX_NPZ_MEMBER_BYTES = 1 << 30

#: Locks this process holds: resolved run path -> [descriptor, users].
_HELD: dict[str, list[int]] = {}


#: The holder's note fills one fixed block, written in one call: a reader never meets a
#: half-written or truncated note, only the old one or the new one.
_HOLDER_NOTE_BYTES = 1024
#: How long a refused process waits for the new holder to write its note.
_HOLDER_NOTE_WAIT_S = 2.0


def _holder_note(fd: int) -> str | None:
    """The holder named in the lock file, or None while it names nobody alive."""
    try:
        info = json.loads(os.pread(fd, _HOLDER_NOTE_BYTES, 0).decode("utf-8"))
        pid, host = int(info["pid"]), str(info["host"])
        who = f"process {pid} on host {host} (started {info['started']}: {info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not written yet
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # the note of a process that died; the new holder has not written yet
        except PermissionError:
            pass  # alive, under another user
    return who


def _holder(fd: int) -> str:
    """Who holds a lock, from the note the holder writes just after it takes the lock."""
    deadline = time.monotonic() + _HOLDER_NOTE_WAIT_S
    while True:
        who = _holder_note(fd)
        if who is not None:
            return who
        if time.monotonic() >= deadline:
            return "another process"
        time.sleep(0.02)


def acquire_lock(path: Path) -> None:
    """Hold the run's lock for this process (re-entrant inside one process)."""
    key = str(path.resolve())
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
        return
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_UMASK)
    except OSError as exc:
        raise RunDirError(f"run directory {path} is not writable: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        who = _holder(fd)
        os.close(fd)
        raise RunInUse(
            f"run directory {path} is in use by {who}; wait for it to end (or stop it) "
            "before using this run"
        ) from None
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["mrnn-hil", *sys.argv[1:3]])[:120],
    }
    note = json.dumps(info).encode("utf-8")[: _HOLDER_NOTE_BYTES - 1]
    with contextlib.suppress(OSError):
        os.pwrite(fd, note.ljust(_HOLDER_NOTE_BYTES, b" "), 0)
    _HELD[key] = [fd, 1]


def release_lock(path: Path) -> None:
    """Give back one hold of the run's lock; the last one releases it."""
    key = str(path.resolve())
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.close(held[0])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, crash_at: str | None = None) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one.

    `crash_at` names the test-only crash point (`protocols.crashpoints`) reached when half
    of the data is written.
    """
    path = Path(path)
    tmp_name = ""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            if crash_at is not None:
                fh.write(data[: len(data) // 2])
                fh.flush()
                crash_point(crash_at)
                fh.write(data[len(data) // 2 :])
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = ""
        _fsync_dir(path.parent)
    except OSError as exc:
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        raise RunDirError(
            f"cannot write {path}: {exc.strerror or exc}; free space or fix permissions, then "
            f"continue with `mrnn-hil train --resume {run}`"
        ) from exc
    finally:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


# -- pickle-free packing of nested state (backend snapshots, generator states) ------------
def pack(obj: Any, arrays: dict[str, NDArray[Any]], prefix: str = "a") -> Any:
    """A JSON-able tree of `obj` with every ndarray moved into `arrays`."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"cannot checkpoint an object array at {prefix}")
        key = f"{prefix}#{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"checkpoint dict keys must be strings at {prefix}")
        return {"__dict__": {k: pack(v, arrays, f"{prefix}.{k}") for k, v in obj.items()}}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, arrays, f"{prefix}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, arrays, f"{prefix}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return {"__scalar__": obj.dtype.str, "v": pack(obj.item(), arrays, prefix)}
    if obj is None or isinstance(obj, bool | int | float | str):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"__float__": repr(obj)}
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix}")


def unpack(tree: Any, arrays: dict[str, NDArray[Any]]) -> Any:
    """Inverse of `pack`."""
    if isinstance(tree, list):
        return [unpack(v, arrays) for v in tree]
    if isinstance(tree, dict):
        if "__array__" in tree:
            return arrays[tree["__array__"]]
        if "__dict__" in tree:
            return {k: unpack(v, arrays) for k, v in tree["__dict__"].items()}
        if "__tuple__" in tree:
            return tuple(unpack(v, arrays) for v in tree["__tuple__"])
        if "__scalar__" in tree:
            return np.dtype(tree["__scalar__"]).type(unpack(tree["v"], arrays))
        if "__float__" in tree:
            return float(tree["__float__"])
        raise ValueError(f"unknown checkpoint node {sorted(tree)}")
    return tree


def npz_bytes(arrays: dict[str, NDArray[Any]]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


class RunDir:
    """Paths and durable writes of one run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.locked = False

    # -- creation and checks -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path) -> RunDir:
        """A new run directory, locked for this process; refuse one that already holds a run,
        that another process uses, or that is not writable."""
        rd = cls(path)
        if (rd.path / "config.json").exists():
            raise RunDirError(
                f"run directory {rd.path} already holds a run; resume it with --resume "
                f"{rd.path} or choose another --out"
            )
        try:
            rd.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(
                f"cannot create run directory {rd.path}: {exc.strerror or exc}"
            ) from exc
        rd.lock()
        try:
            if (rd.path / "config.json").exists():  # made by another process meanwhile
                raise RunDirError(
                    f"run directory {rd.path} already holds a run; resume it with --resume "
                    f"{rd.path} or choose another --out"
                )
            rd.check_writable()
        except BaseException:
            rd.release()
            raise
        return rd

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run, for reading; a process that writes to it calls `lock` first."""
        rd = cls(path)
        if not (rd.path / "config.json").is_file():
            raise RunDirError(f"{rd.path} is not a run directory (no config.json)")
        return rd

    def lock(self) -> None:
        """Hold the run's lock until `release` or the end of the process; `RunInUse` names
        the holder when another process has it."""
        if not self.locked:
            acquire_lock(self.path)
            self.locked = True

    def release(self) -> None:
        if self.locked:
            self.locked = False
            release_lock(self.path)

    def check_writable(self) -> None:
        probe = self.path / ".write-probe"
        try:
            with open(probe, "wb") as fh:
                fh.write(b"ok")
                fh.flush()
                os.fsync(fh.fileno())
            probe.unlink()
        except OSError as exc:
            raise RunDirError(
                f"run directory {self.path} is not writable: {exc.strerror or exc}"
            ) from exc

    def remove_temporaries(self) -> list[str]:
        """Delete the temporary files of writes a killed process left half done (never
        renamed into place, so nothing reads them); call only while holding the run's lock.
        Returns the names removed."""
        removed: list[str] = []
        for folder in (self.path, self.checkpoint_dir):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if _TMP.match(entry.name) and entry.is_file():
                    with contextlib.suppress(OSError):
                        entry.unlink()
                        removed.append(entry.name)
        return removed

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def journal_path(self) -> Path:
        return self.path / "journal.sqlite"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final_path(self) -> Path:
        return self.path / "final.npz"

    # -- files ---------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
        return path

    def read_json(self, name: str) -> Any:
        path = self.path / name
        try:
            return parse_document(
                read_text(path, str(path), MAX_DOCUMENT_BYTES), str(path), ".json"
            )
        except InputError as exc:
            raise RunDirError(f"cannot read {exc}") from None

    def save_npz(self, path: Path, arrays: dict[str, NDArray[Any]]) -> None:
        write_atomic(path, npz_bytes(arrays))

    def save_checkpoint(
        self, position: int, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]
    ) -> Path:
        """Atomically write the state at `position`; keep the newest few checkpoints."""
        packed: dict[str, NDArray[Any]] = dict(arrays)
        tree = pack(meta, packed, "meta")
        packed[_META_KEY] = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
        path = self.checkpoint_dir / f"ckpt-{position:010d}.npz"
        write_atomic(path, npz_bytes(packed), crash_at="checkpoint.write")
        for old in self.checkpoints()[:-KEEP_CHECKPOINTS]:
            with contextlib.suppress(OSError):
                old.unlink()
        return path

    def checkpoints(self) -> list[Path]:
        if not self.checkpoint_dir.is_dir():
            return []
        found = [p for p in self.checkpoint_dir.iterdir() if _CKPT.match(p.name)]
        return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)))  # type: ignore[union-attr]

    def load_npz(self, path: Path, need: tuple[str, ...] = ()) -> dict[str, NDArray[Any]]:
        """Every array of an .npz file, or a one-line `RunDirError` naming the file.

        Only a zip archive of .npy members is read (np.load would take a lone pickle and
        answer with advice to unpickle it); members are size-checked before they are
        inflated, and nothing is ever unpickled.
        """
        try:
            raw = read_bytes(path, str(path), MAX_NPZ_BYTES)
        except InputError as exc:
            raise RunDirError(f"cannot read {exc}") from None
        if not raw.startswith(b"PK\x03\x04"):
            raise RunDirError(f"cannot read {path}: not an .npz archive written by mrnn-hil")
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        raise ValueError(f"member {info.filename[:40]!r} is not an array")
                    if info.file_size > MAX_NPZ_MEMBER_BYTES:
                        raise ValueError(f"member {info.filename[:40]!r} is too large")
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise RunDirError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
        missing = [k for k in need if k not in arrays]
        if missing:
            raise RunDirError(f"cannot read {path}: it holds no {', '.join(missing)}")
        return arrays

    def load_checkpoint(self, path: Path) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        arrays = self.load_npz(path, (_META_KEY,))
        try:
            tree = json.loads(arrays.pop(_META_KEY).tobytes().decode())
            meta = unpack(tree, arrays)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise RunDirError(f"cannot read {path}: damaged state entry ({exc!s:.80})") from None
        plain = {k: v for k, v in arrays.items() if "#" not in k}
        return plain, meta

    def latest_checkpoint(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]] | None:
        """The newest checkpoint that loads; None when the run never reached one.

        A damaged checkpoint falls back to the one before it; when every checkpoint is
        damaged the run is not "without a checkpoint": a `RunDirError` names the damage.
        """
        found = self.checkpoints()
        problems: list[str] = []
        for path in reversed(found):
            try:
                return self.load_checkpoint(path)
            except (RunDirError, ValueError, KeyError, TypeError) as exc:  # try the one before
                problems.append(f"{path.name}: {' '.join(str(exc).split())[:200]}")
        if found:
            raise RunDirError(
                f"every checkpoint of {self.path} is damaged ({problems[0]}"
                f"{f'; and {len(problems) - 1} more' if len(problems) > 1 else ''}); the run "
                "cannot continue from a checkpoint"
            )
        return None
