# TLS for an https:// server URL (docs/wifi.md, "HTTPS"): the streams of a connection the
# HAL opened, wrapped in TLS that verifies the server against the certificate the config
# pins (sync.server_cert: the server's own certificate, or the CA's that signed it, PEM).
# Loaded only for an https URL: a plain-HTTP kiosk never imports it, nor MicroPython's tls.
#
# MicroPython's `ssl` is micropython-lib's Python layer over the built-in `tls` module
# (extmod/modtls_mbedtls.c); this uses `tls` itself, whose SSLContext, load_verify_locations
# (positional: the shim's first argument is a file name), verify_mode and wrap_socket are
# the same in MicroPython 1.24 (the stock ESP32 firmware) and 1.29.
#
# Nothing here blocks on the network: the socket stays non-blocking and the handshake
# (do_handshake_on_connect=False) runs inside the first writes and reads of the request,
# whose every wait yields to the survey under the push's step timeouts. The handshake's
# arithmetic (the key exchange and the certificate's signature check) does not yield:
# on an ESP32 it holds the loop for a while each push (docs/hardware.md, "TLS").
import asyncio
import binascii

import tls
from kiosk.push import PushError


class CertificateRejected(PushError):
    """The server's certificate did not verify (not the pinned one, expired, another
    host name), or the handshake failed: nothing was sent."""


_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"


def _context(pem):
    context = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    # CERT_REQUIRED is the only mode in which mbedTLS checks anything (docs/library/ssl.rst).
    # (The ESP32 stubs lack verify_mode; modtls_mbedtls.c has it since MicroPython 1.22.)
    context.verify_mode = tls.CERT_REQUIRED  # pyright: ignore[reportAttributeAccessIssue]
    # Each certificate goes in as DER, decoded here: mbedTLS takes PEM only when its
    # build has MBEDTLS_PEM_PARSE_C (the unix port from PyPI has not; ESP-IDF's has), and
    # DER one certificate per call, each added to the context's trusted list.
    at = 0
    count = 0
    while True:
        begin = pem.find(_BEGIN, at)
        if begin < 0:
            break
        end = pem.find(_END, begin)
        if end < 0:
            break
        try:
            context.load_verify_locations(binascii.a2b_base64(pem[begin + len(_BEGIN):end]))
        except ValueError:  # bad base64, or mbedTLS's "invalid cert"
            raise ValueError("sync.server_cert: certificate %d is not one MicroPython can "
                             "read" % (count + 1))
        count += 1
        at = end + len(_END)
    if not count:
        raise ValueError("sync.server_cert holds no PEM certificate")
    return context


class Verifier:
    """The TLS context for one pinned certificate, made once and kept (the CA parsed, the
    random generator seeded) for every request until the certificate changes: the push
    and any other request to the same server share it."""

    def __init__(self):
        self._context = None
        self._pem = None

    def context(self, pem):
        """The context trusting pem; ValueError when pem holds no certificate mbedTLS
        reads."""
        context = self._context
        if context is None or pem != self._pem:
            self._context = context = None  # its memory goes before the next one's comes
            context = self._context = _context(pem)
            self._pem = pem
        return context

    async def open(self, connect, address, port, host, pem):
        """(reader, writer) speaking TLS to host (its name or IPv4 address, which the
        certificate must name) at address:port; connect(address, port) is the HAL's
        open_connection. The handshake happens at the first write; its failure comes out
        of write() or drain() as CertificateRejected."""
        context = self.context(pem)
        _, writer = await connect(address, port)
        sock = writer.s  # the socket under MicroPython's asyncio stream
        try:
            wrapped = context.wrap_socket(sock, server_hostname=host,
                                          do_handshake_on_connect=False)
        except BaseException:
            sock.close()
            raise
        stream = _Stream(wrapped, writer.e)
        return stream, stream


def _rejection(e):
    # mbedTLS's verification report is a ValueError with its reasons, one a line
    # (modtls_mbedtls.c); other handshake failures are OSErrors with mbedTLS's negative
    # codes. A plain socket error (positive errno) is the network's, left as it is.
    if isinstance(e, ValueError):
        return CertificateRejected("server certificate rejected: %s"
                                   % " ".join(str(e).split()))
    code = e.args[0] if e.args else 0
    if isinstance(e, OSError) and isinstance(code, int) and code < 0:
        return CertificateRejected("TLS handshake failed: %s" % (e,))
    return None


class _Stream(asyncio.StreamWriter):
    """MicroPython's asyncio stream over the TLS socket, its handshake failures told
    apart from the network's."""

    def write(self, data):
        try:
            return super().write(data)
        except Exception as e:
            raise _rejection(e) or e

    async def drain(self):
        try:
            return await super().drain()
        except Exception as e:
            raise _rejection(e) or e
