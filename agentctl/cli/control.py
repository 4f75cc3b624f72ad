"""The control channel of a run: a Unix socket the CLI user talks to the running process on.

Served by :class:`~agentctl.cli.session.Session` inside its task group; used by ``agentctl
send`` and ``agentctl stop`` (and any later command that steers a live run). A file that an
agent can append to cannot stand in for it: only a process of the run's own user can
connect (the socket is mode 0600 and every connection's peer uid is checked with
``SO_PEERCRED``), and whatever arrives is acted on as from ``user``; a request cannot name
another sender.

The protocol is one JSON object per connection each way, newline-terminated::

    -> {"op": "send", "to": "worker", "kind": "chat", "body": ...}
    <- {"ok": true, "seq": 42}          or   {"ok": false, "error": "no live agent 'x'"}

What the ops are is up to the server's handler (see ``Session._control``). The socket lives
in the run directory when the path fits ``sun_path`` (108 bytes with its NUL); otherwise
under ``$XDG_RUNTIME_DIR`` or a private ``/tmp/agentctl-<uid>`` directory, named after the run
id. Either way its path is recorded in the ``control`` field of ``run/started`` and
``run/resumed``, which is where clients look it up.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from ..errors import AgentctlError

__all__ = ["ControlError", "Handler", "MAX_REQUEST", "NoReply", "NotListening", "SOCKET_NAME", "request", "serve_control",
           "socket_path"]

SOCKET_NAME = "control.sock"
#: ``sun_path`` holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107
#: The longest request line accepted (a message body included).
MAX_REQUEST = 1 << 20

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(AgentctlError):
    """The control channel could not be used: no socket, refused, or a bad reply."""


class NotListening(ControlError):
    """Nothing accepts connections on the socket (yet: a run binds it once its runtime is up)."""


class NoReply(ControlError):
    """The run took the request and closed the connection without a word: its process ended
    (killed) while it handled it, so whether the request took effect is for its log to say."""


def socket_path(run_dir: Path, run_id: str) -> Path:
    """Where the run's control socket goes: in ``run_dir`` if the path fits, else a short path.

    Raises:
        ControlError: no private directory for the fallback, or even that path is too long.
    """
    path = Path(run_dir).resolve() / SOCKET_NAME
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    path = _private_dir() / f"agentctl-{run_id}.sock"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ControlError(f"no socket path short enough for run {run_id} (tried {path})")
    return path


def _private_dir() -> Path:
    """``$XDG_RUNTIME_DIR`` if usable, else ``<tmp>/agentctl-<uid>``, which must be ours and 0700."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and _is_private(Path(runtime)):
        return Path(runtime)
    path = Path(tempfile.gettempdir()) / f"agentctl-{os.getuid()}"
    with suppress(FileExistsError):
        path.mkdir(mode=0o700)
    if not _is_private(path):
        raise ControlError(f"{path} is not a private directory of this user (owner, mode 0700, not a symlink)")
    return path


def _is_private(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None where unsupported)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return int(uid)


async def serve_control(
    path: Path, handle: Handler, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve requests on a Unix socket at ``path`` until cancelled; the socket is removed after.

    A stale socket left by a killed process of the same run is replaced. Each connection
    carries one request; connections from another uid are answered with a refusal and
    never reach ``handle``.

    Raises:
        ControlError: the socket cannot be made (something else holds the path).
    """
    with suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    try:
        listener = await anyio.create_unix_listener(path, mode=0o600)
    except OSError as exc:
        raise ControlError(f"cannot serve the control channel at {path}: {exc.strerror or exc}") from None
    try:
        async with listener, anyio.create_task_group() as tg:
            task_status.started()
            while True:
                stream = await listener.accept()
                tg.start_soon(_serve_one, stream, handle)
    finally:
        with suppress(FileNotFoundError):
            path.unlink()


async def _serve_one(stream: anyio.abc.SocketStream, handle: Handler) -> None:
    async with stream:
        request: dict[str, Any] | str = "no complete request within 30 s"
        with anyio.move_on_after(30):
            request = await _read_request(stream)
        # Shielded (and bounded): the run may be ending, even because of this very request,
        # and the caller is still owed its answer.
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            reply = await _handle(request, handle)
            with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(orjson.dumps(reply) + b"\n")


async def _read_request(stream: anyio.abc.SocketStream) -> dict[str, Any] | str:
    """The request, or why there is none to act on."""
    uid = peer_uid(stream.extra(SocketAttribute.raw_socket))
    if uid is not None and uid != os.getuid():
        return f"refused: peer uid {uid} is not the run's user"
    try:
        line = await BufferedByteReceiveStream(stream).receive_until(b"\n", MAX_REQUEST)
        message = orjson.loads(line)
    except (anyio.IncompleteRead, anyio.DelimiterNotFound, orjson.JSONDecodeError, anyio.EndOfStream) as exc:
        return f"bad request: {type(exc).__name__}"
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        return 'bad request: expected {"op": ..., ...}'
    return message


async def _handle(request: dict[str, Any] | str, handle: Handler) -> dict[str, Any]:
    if isinstance(request, str):
        return {"ok": False, "error": request}
    try:
        return await handle(request)
    except AgentctlError as exc:
        return {"ok": False, "error": str(exc)}


def request(path: Path, message: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the control socket at ``path`` and return the reply (blocking).

    Raises:
        ControlError: no socket there, a refused connection, a server of another user, or
            no well-formed reply within ``timeout`` seconds.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fsencode(path))
            uid = peer_uid(sock)
            if uid is not None and uid != os.getuid():
                raise ControlError(f"{path}: served by uid {uid}, not by this user; not sending")
            sock.sendall(orjson.dumps(message) + b"\n")
            reply = _read_reply(sock)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotListening(f"no run is listening on {path} ({exc.strerror})") from None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
    if not reply:
        raise NoReply(f"control socket {path}: the run closed the connection without answering")
    try:
        value = orjson.loads(reply)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ControlError(f"control socket {path}: a reply that is not a JSON object: {reply[:80]!r}")
    return value


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    return data
