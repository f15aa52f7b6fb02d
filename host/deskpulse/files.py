"""Files written whole or not at all: beside their final name, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from deskpulse.errors import DeskPulseError


@contextlib.contextmanager
def replacing(target: Path, *, text: bool = False, private: bool = False) -> Iterator[IO[Any]]:
    """A file to write that replaces target once the `with` body ends without an error;
    a failure leaves target as it was and no temporary file behind. private keeps the
    file to its owner (mkstemp's 0600: a config with a kiosk's key), else it gets the
    mode the umask gives a new file, as any other output would."""
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    except OSError as exc:
        raise DeskPulseError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        out: IO[Any] = (os.fdopen(fd, "w", encoding="utf-8", newline="") if text
                        else os.fdopen(fd, "wb"))
        with out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, target)
    except OSError as exc:
        raise DeskPulseError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def write_whole(target: Path, data: bytes, *, private: bool = False) -> None:
    """data at target, whole or not at all (see replacing)."""
    with replacing(target, private=private) as out:
        out.write(data)
