"""A local SNTP server on 127.0.0.1 for the firmware's NTP client tests."""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType

NTP_TO_UNIX = 2208988800  # seconds from 1900 (NTP's era 0) to 1970


class NtpServer:
    """Answers each client request (mode 3) with the next raw transmit seconds queued in
    `queued`, or with the current time when none is queued; `answered` collects the unix
    seconds it sent (None for a raw value that is no time of era 0)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.queued: list[int] = []
        self.answered: list[int | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            if len(data) < 48 or data[0] & 7 != 3:
                continue
            seconds = self.queued.pop(0) if self.queued else int(time.time()) + NTP_TO_UNIX
            answer = bytearray(48)
            answer[0] = 0x24  # leap 0, version 4, mode 4 (server)
            answer[1] = 2  # stratum
            struct.pack_into("!II", answer, 40, seconds, 0)
            self.answered.append(seconds - NTP_TO_UNIX if seconds >= NTP_TO_UNIX else None)
            self.sock.sendto(bytes(answer), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> NtpServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
