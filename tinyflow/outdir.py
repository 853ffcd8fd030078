"""Output folders and files that are all or nothing, and that never take a user's files with them.

A folder is built in a staging sibling (``.<name>.staging-<pid>-<random>``) and published by rename. At
publish time the marker file ``.tinyflow-output`` records, as JSON, every file tinyflow wrote there and its
SHA-256. A later run replaces the folder without ``--force`` only while that record still describes it
exactly: a file the user added or edited, a marker that does not parse or lists nothing, or no marker at
all make it the user's folder, and only ``--force`` replaces it (the whole folder, added files included).
Deleting generated files is not a change worth keeping: nothing of the user's would be lost.

Staging and trash siblings carry the creating process's id, so a run removes the ones a killed run left
behind (creator gone, or older than a day) without touching a concurrent run's.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from .errors import InputError, OutputExistsError

MARKER = ".tinyflow-output"
MARKER_VERSION = 1
_MARKER_LIMIT = 16 << 20  # a planted FIFO or /dev/zero link must not be read without bound
_STALE_AFTER_S = 24 * 3600
_SHOWN = 3  # paths named in a refusal; the rest are counted


def open_regular(path: Path) -> BinaryIO | None:
    """``path`` opened for reading if it is a regular file, without following a symbolic link (and without
    blocking on a FIFO); None for anything else. What is checked is what is read: no window for a swap."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        return None
    return f


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a regular file, without following a symbolic link; None for anything else."""
    f = open_regular(path)
    if f is None:
        return None
    with f:
        h = hashlib.sha256()
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _valid_name(rel: object) -> bool:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def read_marker(folder: str | Path) -> dict[str, str] | None:
    """The files tinyflow wrote in ``folder`` (POSIX paths relative to it) and their SHA-256, from its marker.

    None when the marker is missing, not a regular file, does not parse, or lists nothing: such a folder
    is not tinyflow's."""
    try:
        fd = os.open(Path(folder) / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = f.read(_MARKER_LIMIT + 1)
    if len(raw) > _MARKER_LIMIT:
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    files = doc.get("files") if isinstance(doc, dict) and doc.get("written_by") == "tinyflow" else None
    if not isinstance(files, dict) or not files:
        return None
    if not all(_valid_name(k) and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for k, v in files.items()):
        return None
    return dict(files)


def _manifest(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            digest = file_sha256(p)
            if rel != MARKER and digest is not None:
                out[rel] = digest
    return out


def write_marker(folder: Path) -> None:
    """Record every regular file now in ``folder`` with its hash: what makes the folder tinyflow's."""
    doc = {"written_by": "tinyflow", "version": MARKER_VERSION,
           "note": "tinyflow wrote this folder; re-running replaces it while these files are unchanged",
           "files": _manifest(folder)}
    write_text(folder / MARKER, json.dumps(doc, indent=1, sort_keys=True) + "\n")


# What building a generated project leaves in it (PlatformIO's build folder, ESP-IDF's component manager
# and per-environment sdkconfig, an editor's settings): made by tools from tinyflow's files, not the user's
# work, so `pio run` then a re-run of generate needs no --force. Replacing the folder rebuilds them.
_BUILD_OUTPUTS = frozenset({".pio", "managed_components", "dependencies.lock", ".vscode", "compile_commands.json"})


def _build_output(name: str) -> bool:
    return name in _BUILD_OUTPUTS or (name.startswith("sdkconfig.") and name != "sdkconfig.defaults")


def user_changes(folder: Path, listed: dict[str, str] | None) -> list[str]:
    """What in ``folder`` is not as tinyflow left it: added files and links, and edited files marked
    "(edited)". Folders count by what they hold: an empty one holds nothing of the user's. What a build of
    the project writes (``.pio/``, ``managed_components/``...) is not counted."""
    listed = listed or {}
    found: list[str] = []

    def walk(d: Path, prefix: str) -> None:
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = prefix + e.name
            if rel == MARKER or (rel not in listed and _build_output(e.name)):
                continue
            if e.is_dir(follow_symlinks=False):
                walk(Path(e.path), rel + "/")
            elif rel not in listed:
                found.append(rel)
            elif file_sha256(Path(e.path)) != listed[rel]:
                found.append(f"{rel} (edited)")

    walk(folder, "")
    return found


def _some(paths: list[str]) -> str:
    more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
    return f"{len(paths)} {'file' if len(paths) == 1 else 'files'}: {', '.join(paths[:_SHOWN])}{more}"


def _check_parents(path: Path) -> None:
    for parent in path.parents:
        try:
            st = os.stat(parent)  # a symbolic link to a folder is a fine place to write under
        except FileNotFoundError:
            if os.path.islink(parent):
                raise InputError(f"{path}: {parent} is a symbolic link to a missing target; fix or remove the "
                                 "link, or choose another path") from None
            continue
        except NotADirectoryError:
            continue  # an ancestor further up is a file: reported when the loop reaches it
        except OSError as e:
            raise InputError(f"{path}: cannot look at {parent} ({e.strerror}); choose another path") from None
        if not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path}: {parent} is a file, not a folder; choose another path")
        return


def _check_not_a_home(path: Path) -> None:
    # Replacing the folder one works in (or one above it, or the home folder) is never what --out meant,
    # and --force would do it.
    try:
        real = path.resolve()
        homes = [Path.cwd().resolve(), Path.home().resolve()]
    except (OSError, RuntimeError):
        return
    for home in homes:
        if real == home or real in home.parents:
            raise OutputExistsError(f"{path}: is the current or home folder or holds it, and tinyflow replaces "
                                    "its output folder whole; give a new folder inside it as --out")


def check_output_dir(path: Path, force: bool) -> None:
    """Refuse an output folder that would take the user's files with it (one line, naming them and the fix)."""
    _check_parents(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise InputError(f"{path}: cannot use it as the output folder ({e.strerror}); choose another --out") from None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        what = "a symbolic link" if os.path.exists(path) else "a dangling symbolic link"
        raise OutputExistsError(f"{path}: is {what} (to {target}); tinyflow does not write through links: give "
                                "the real folder as --out, or remove the link")
    if not stat.S_ISDIR(st.st_mode):
        raise OutputExistsError(f"{path}: exists and is a file, not a folder; choose another --out")
    _check_not_a_home(path)
    if force:
        return
    listed = read_marker(path)
    try:
        changes = user_changes(path, listed)
    except OSError as e:
        raise InputError(f"{path}: cannot read the output folder ({e.strerror}); fix its permissions or choose "
                         "another --out") from None
    if not changes:
        return
    if listed is None:
        raise OutputExistsError(f"{path}: holds what tinyflow did not write ({_some(changes)}); choose another "
                                "--out, or pass --force to replace the whole folder")
    raise OutputExistsError(f"{path}: has files added or edited since tinyflow wrote it ({_some(changes)}); "
                            "move them elsewhere, or pass --force to replace the whole folder")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OverflowError:
        return False
    return True


def remove_stale_siblings(dest: Path) -> list[Path]:
    """Remove ``.<name>.staging-*`` / ``.<name>.old-*`` folders that a killed run left next to ``dest``.

    One is stale when the process that made it is gone or it is more than a day old; a concurrent run's
    folder is left alone. Returns what was removed."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(?:staging|old)-(?:(\d+)-)?.+")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for e in entries:
        m = pattern.fullmatch(e.name)
        if not m or not e.is_dir(follow_symlinks=False):
            continue
        try:
            age = time.time() - e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if age > _STALE_AFTER_S or (pid is not None and pid != os.getpid() and not _pid_alive(pid)):
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


class OutputDir:
    """``with OutputDir(dest, force) as out:`` write into ``out.path``; ``out.publish()`` makes it ``dest``.

    Leaving the block without publishing (an error, Ctrl-C, SIGTERM turned into an exception by the CLI)
    removes the staging folder and leaves ``dest`` as it was."""

    def __init__(self, dest: str | Path, force: bool = False):
        self.dest = Path(dest).absolute()
        self.force = force
        self.path = self.dest  # replaced by the staging folder on enter
        self.published = False
        self._staging: Path | None = None

    def __enter__(self) -> OutputDir:
        check_output_dir(self.dest, self.force)
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_siblings(self.dest)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.staging-{os.getpid()}-",
                                              dir=self.dest.parent))
            os.chmod(self.path, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the published folder
        except OSError as e:
            raise InputError(f"{self.dest}: cannot create the output folder ({e.strerror}); choose another "
                             "--out") from None
        self._staging = self.path
        return self

    def publish(self) -> Path:
        if self.published:
            return self.dest
        staging = self.path
        write_marker(staging)
        # A long run gives the user time to add files: look again right before replacing anything.
        check_output_dir(self.dest, self.force)
        trash: Path | None = None
        try:
            if os.path.lexists(self.dest):
                try:
                    trash = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.old-{os.getpid()}-",
                                                  dir=self.dest.parent))
                except OSError as e:
                    raise InputError(f"{self.dest}: cannot replace it ({e.strerror}); check the permissions of "
                                     "its parent or choose another --out") from None
                try:
                    os.rename(self.dest, trash / "old")
                except OSError as e:
                    os.rmdir(trash)
                    trash = None
                    if e.errno not in (errno.EBUSY, errno.EXDEV):
                        raise InputError(f"{self.dest}: cannot replace it ({e.strerror}); check its permissions "
                                         "or choose another --out") from None
                    # A mount point (a Docker volume, an SD card) cannot be renamed: replace what is in it.
                    self._replace_contents(staging)
                    return self._done()
            try:
                os.rename(staging, self.dest)
            except OSError as e:
                raise InputError(f"{self.dest}: cannot publish the output folder ({e.strerror}); check the "
                                 "permissions of its parent or choose another --out") from None
        except BaseException:
            if trash is not None and os.path.lexists(trash / "old") and not os.path.lexists(self.dest):
                with contextlib.suppress(OSError):
                    os.rename(trash / "old", self.dest)  # the previous output stays rather than vanishing
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
            raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return self._done()

    def _replace_contents(self, staging: Path) -> None:
        # Not atomic: the marker goes first and comes back last, so an interrupted replacement reads as the
        # user's folder (refused without --force), never as tinyflow's.
        try:
            old = sorted(self.dest.iterdir(), key=lambda p: p.name != MARKER)
            for p in old:
                _remove(p)
            new = sorted(staging.iterdir(), key=lambda p: p.name == MARKER)
            for p in new:
                shutil.move(str(p), str(self.dest / p.name))
        except OSError as e:
            raise InputError(f"{self.dest}: cannot replace the contents of the folder ({e.strerror}); choose "
                             "another --out") from None
        shutil.rmtree(staging, ignore_errors=True)

    def _done(self) -> Path:
        self.path = self.dest
        self.published = True
        return self.dest

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self.published and self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)


def check_output_file(path: str | Path, force: bool) -> None:
    """Refuse an output file that exists (unless ``force``), is a folder, or sits under a file."""
    if str(path) == "":
        raise InputError("the output file name is empty; give a path such as planned.tflite")
    path = Path(path)
    _check_parents(path)
    if path.parent != path and not path.parent.exists():
        raise InputError(f"{path}: the folder {path.parent} does not exist; create it or choose another path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise InputError(f"{path}: cannot use it as the output file ({e.strerror}); choose another path") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputExistsError(f"{path}: is a folder; give a file name")
    if not force:
        what = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else "a file" if stat.S_ISREG(st.st_mode)
                else "a FIFO, socket or device")
        raise OutputExistsError(f"{path}: exists ({what}); pass --force to replace it (a link is replaced, "
                                "not written through), or choose another path")


@functools.cache
def _umask() -> int:
    # Read once: setting it to read it is not thread-safe, and a process does not change it mid-run.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file by rename, so a reader never sees half of it.

    The temporary file is created exclusively in the same folder (O_CREAT|O_EXCL: a planted file or
    symbolic link under its name is never followed or overwritten); the rename then replaces ``path``
    itself, so a link at ``path`` is replaced, not written through."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise InputError(f"{path}: cannot write it ({e.strerror}); check the folder's permissions or choose "
                         "another path") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 would hide the output from its group
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise InputError(f"{path}: cannot write it ({e.strerror}); check free space and permissions, or "
                             "choose another path") from None
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
