"""Run the web service as an unprivileged system user when it is started as root.

`make serve` runs as root on a fresh machine (apt, the PostgreSQL cluster), but the server that
answers the network must not: a flaw in a page would otherwise run with root's rights. Before
the application is imported the process creates the system user if needed, gives it the few
folders it writes (the data folder, its caches), binds the listening socket (a port below 1024
needs root) and then drops to that user for good."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gis.settings import PROJECT_ROOT, Settings


class ServiceUserError(RuntimeError):
    """The service cannot run as the unprivileged user; the message says what to do."""


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    home: Path


def ensure_system_user(name: str) -> ServiceUser:
    """The system user `name`, created (no login, no home folder) when it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True, text=True,
        )
        entry = pwd.getpwnam(name)
    return ServiceUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def _as_user(user: ServiceUser, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", *argv],
        cwd="/", capture_output=True, text=True, env={"PATH": os.environ.get("PATH", ""),
                                                      "LANG": "C.UTF-8"},
    )


def _can(st: os.stat_result, user: ServiceUser, bits: int) -> bool:
    """Whether `user` has all of `bits` (stat.S_IROTH-style: 4 read, 1 search) on a file."""
    if st.st_uid == user.uid:
        return (st.st_mode >> 6) & bits == bits
    if st.st_gid == user.gid:
        return (st.st_mode >> 3) & bits == bits
    return st.st_mode & bits == bits


def closed_folders(user: ServiceUser, root: Path = PROJECT_ROOT) -> list[tuple[Path, int]]:
    """Folders the service cannot use, with the access it lacks (4 read, 1 search): those on the
    way to the checkout and to every folder of this interpreter's import path (the standard
    library may live in root's home, as with pyenv), and those folders themselves."""
    wanted: dict[Path, int] = {}
    reads = [root, *(Path(p) for p in sys.path if p and os.path.isdir(p))]
    for path in reads:
        real = path.resolve()
        for folder in real.parents:
            wanted[folder] = wanted.get(folder, 0) | 1
        wanted[real] = wanted.get(real, 0) | 5
    closed = []
    for folder, bits in sorted(wanted.items()):
        missing = sum(b for b in (4, 1) if bits & b and not _can(folder.stat(), user, b))
        if missing:
            closed.append((folder, missing))
    return closed


def _describe(closed: list[tuple[Path, int]]) -> str:
    return ", ".join(f"{f} (mode {oct(f.stat().st_mode & 0o777)})" for f, _ in closed)


def open_the_way(user: ServiceUser, root: Path = PROJECT_ROOT, *, allowed: bool = True) -> None:
    """Let `user` reach the code and the interpreter: grant it search (and read, on the import
    folders themselves) where a folder is closed, e.g. a checkout or pyenv under /root. With an
    ACL tool only that user gets it, otherwise other users get search-only (no listing).
    With `allowed` false nothing is changed and the closed folders are named instead."""
    closed = closed_folders(user, root)
    if not closed:
        return
    if not allowed:
        raise ServiceUserError(
            f"the service runs as the unprivileged user '{user.name}', which cannot read the "
            f"code at {root} or its Python environment: closed to other users are "
            f"{_describe(closed)}. Put the checkout where every user may enter (e.g. "
            "/opt/wangge), or open the way with `chmod o+x` on each closed folder, or let "
            "`wangge serve` do it (WANGGE_SERVICE_OPEN_FOLDERS=true)."
        )
    setfacl = shutil.which("setfacl")
    for folder, missing in closed:
        perm = ("r" if missing & 4 else "") + ("x" if missing & 1 else "")
        if setfacl:
            subprocess.run([setfacl, "-m", f"u:{user.name}:{perm}", str(folder)], check=True)
        else:
            extra = (0o004 if missing & 4 else 0) | (0o001 if missing & 1 else 0)
            folder.chmod(folder.stat().st_mode | extra)
        print(f"granted '{user.name}' {perm} on {folder} so the service can read its code",
              file=sys.stderr)
    still = closed_folders(user, root)
    if still:
        raise ServiceUserError(f"'{user.name}' still cannot reach {_describe(still)}")


def _own(path: Path, user: ServiceUser) -> None:
    """`path` and everything below it belong to the user (what root wrote there since)."""
    path.mkdir(parents=True, exist_ok=True)
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            st = os.lstat(name)
            if (st.st_uid, st.st_gid) != (user.uid, user.gid):
                os.lchown(name, user.uid, user.gid)


def writable_folders(settings: Settings) -> dict[str, Path]:
    """What the service writes: the data folder (flood rasters) and its caches (numba's
    compiled functions, fontconfig's); nothing else under var/ or the checkout."""
    return {"data": settings.data_dir, "cache": settings.var_dir / "service-cache"}


def bind_socket(host: str, port: int) -> socket.socket:
    """The service's listening socket, bound (port 0: a free one), for uvicorn's `sockets=`.

    The protocol is named (IPPROTO_TCP), not left at 0: accepted connections inherit it, and
    asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that report TCP. Without
    it every request after the first on a kept-alive connection waited ~40 ms for the client's
    delayed ACK before the body of its answer left (uvicorn issue 3149): map pages and API
    clients reuse connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def drop_root(settings: Settings, user_name: str) -> ServiceUser:
    """As root: prepare `user_name` and become it, in this process and irreversibly."""
    user = ensure_system_user(user_name)
    open_the_way(user, allowed=settings.service_open_folders)
    folders = writable_folders(settings)
    for path in folders.values():
        _own(path, user)
        if _as_user(user, ["test", "-w", str(path), "-a", "-x", str(path)]).returncode != 0:
            raise ServiceUserError(
                f"the unprivileged user '{user.name}' cannot enter {path}: a folder above it "
                "is closed to other users; set WANGGE_DATA_DIR / WANGGE_VAR_DIR to a place it "
                "may reach"
            )
    cache = folders["cache"]
    # Read by numba and fontconfig when first imported, which happens after the switch.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache / "numba"))
    os.environ["XDG_CACHE_HOME"] = str(cache)
    os.environ["HOME"] = str(cache)
    os.environ["USER"] = os.environ["LOGNAME"] = user.name
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    if os.getuid() == 0 or os.geteuid() == 0:  # pragma: no cover - setuid raises first
        raise ServiceUserError("could not give up root")
    os.umask(0o027)
    return user
