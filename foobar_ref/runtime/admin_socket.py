"""Where a hop's admin socket lives, and binding it before the hop says READY.

No event loop here (the trio and asyncio shells both use it).  The socket is bound
and listening synchronously while the hop builds its listeners, so by the time the
supervisor reads READY, `/metrics` answers: a connection that arrives before the
serving task runs waits in the listen backlog instead of being refused.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

ADMIN_BACKLOG = 16


def admin_socket_path(state_dir: Path, hop: str) -> Path:
    return state_dir / "run" / f"{hop}.admin.sock"


def bind_admin_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # left by a hop that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(ADMIN_BACKLOG)
    sock.setblocking(False)
    return sock
