"""File backends: the real filesystem, and an in-memory one for virtual nodes."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import threading
import time
from typing import Any

from agents.plugins.base import ActionError

MD5_CHUNK = 1 << 20


def absent_status() -> dict[str, Any]:
    """The status of a path that does not exist."""
    return {
        "present": False, "type": "absent", "size": None, "mtime": None, "md5": None,
        "owner": None, "group": None, "mode": None,
    }  # fmt: skip


class FileBackend:
    """touch, remove and status of one absolute path."""

    name = "abstract"

    def touch(self, path: str) -> None:
        """Create an empty file or update its mtime; ABORTED if the directory is missing."""
        raise NotImplementedError

    def remove(self, path: str) -> bool:
        """Remove a file (never a directory); False if it was absent already."""
        raise NotImplementedError

    def status(self, path: str) -> dict[str, Any]:
        """present, type, size, mtime, md5 (regular files), owner, group, mode ("0644")."""
        raise NotImplementedError


def _name(lookup: Any, ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


class LocalFileBackend(FileBackend):
    """The node's own filesystem; symlinks are reported, not followed, by status and remove."""

    name = "local"

    def touch(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                os.utime(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ActionError(f"cannot touch {path}: {exc.strerror}") from None

    def remove(self, path: str) -> bool:
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                raise ActionError(f"{path} is a directory; filemgr removes files only")
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ActionError(f"cannot remove {path}: {exc.strerror}") from None
        return True

    def status(self, path: str) -> dict[str, Any]:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return absent_status()
        except OSError as exc:
            raise ActionError(f"cannot stat {path}: {exc.strerror}") from None
        kind = (
            "file" if stat.S_ISREG(st.st_mode)
            else "directory" if stat.S_ISDIR(st.st_mode)
            else "symlink" if stat.S_ISLNK(st.st_mode)
            else "other"
        )  # fmt: skip
        return {
            "present": True,
            "type": kind,
            "size": st.st_size,
            "mtime": st.st_mtime,
            "md5": self._md5(path) if kind == "file" else None,
            "owner": _name(pwd.getpwuid, st.st_uid),
            "group": _name(grp.getgrgid, st.st_gid),
            "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        }

    def _md5(self, path: str) -> str | None:
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(MD5_CHUNK):
                    digest.update(chunk)
        except OSError:
            return None  # unreadable (e.g. a FIFO that vanished): report the rest anyway
        return digest.hexdigest()


EMPTY_MD5 = hashlib.md5(b"", usedforsecurity=False).hexdigest()


class SimulatedFileBackend(FileBackend):
    """An in-memory filesystem of empty files for simulator nodes: never touches the host.

    Every directory exists; a touched file stays until removed; mtimes come from ``clock``.
    """

    name = "simulated"

    def __init__(self, clock: Any = time.time) -> None:
        self._files: dict[str, float] = {"/etc/hosts": 0.0, "/etc/motd": 0.0}
        self._clock = clock
        self._lock = threading.Lock()

    def touch(self, path: str) -> None:
        with self._lock:
            self._files[path] = float(self._clock())

    def remove(self, path: str) -> bool:
        with self._lock:
            return self._files.pop(path, None) is not None

    def status(self, path: str) -> dict[str, Any]:
        with self._lock:
            if path not in self._files:
                return absent_status()
            return {
                "present": True, "type": "file", "size": 0, "mtime": self._files[path],
                "md5": EMPTY_MD5, "owner": "root", "group": "root", "mode": "0644",
            }  # fmt: skip
