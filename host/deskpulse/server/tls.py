"""HTTPS for `deskpulse serve --certfile F --keyfile F`: the files checked before the
server listens, so that a missing, unreadable or mismatched file, or a key locked with a
passphrase (a service has nobody to type it), is one clear error instead of a traceback
from inside uvicorn."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from deskpulse.errors import DeskPulseError


@dataclass(frozen=True, slots=True)
class TlsFiles:
    certfile: str  # the server's certificate (PEM), followed by any intermediate CAs
    keyfile: str  # its private key (PEM), without a passphrase


class _Passphrase(Exception):
    pass


def _no_passphrase() -> str:
    raise _Passphrase


def check_tls_files(certfile: str | os.PathLike[str] | None,
                    keyfile: str | os.PathLike[str] | None) -> TlsFiles | None:
    """The pair to serve HTTPS with, checked by loading it as the server will; None for
    plain HTTP (neither given). Raises DeskPulseError saying what to fix."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise DeskPulseError("HTTPS needs both --certfile and --keyfile")
    files = TlsFiles(os.fspath(certfile), os.fspath(keyfile))
    for option, path in (("--certfile", files.certfile), ("--keyfile", files.keyfile)):
        if not os.path.isfile(path):
            raise DeskPulseError(f"{option} {path}: no such file")
        if not os.access(path, os.R_OK):
            raise DeskPulseError(f"{option} {path}: not readable by this user")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.certfile, files.keyfile, password=_no_passphrase)
    except _Passphrase:
        raise DeskPulseError(
            f"--keyfile {files.keyfile} is protected by a passphrase, which a server "
            "started unattended cannot type: remove it (e.g. `openssl pkey -in KEY -out "
            "KEY.plain`) and keep the file readable by this user only") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            why = "the key does not belong to the certificate"
        elif exc.reason == "NO_CERTIFICATE_ASSIGNED":
            why = "the key is of another type than the certificate's: not its key"
        else:
            why = "one of them is not a PEM certificate or key"
        raise DeskPulseError(
            f"cannot serve HTTPS with --certfile {files.certfile} and --keyfile "
            f"{files.keyfile}: {why} ({exc.reason or exc})") from exc
    except OSError as exc:
        raise DeskPulseError(f"cannot read the HTTPS files: {exc}") from exc
    return files
