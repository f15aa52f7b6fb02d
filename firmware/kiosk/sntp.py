# One SNTP query (RFC 4330) without blocking the loop. MicroPython's ntptime waits on a
# blocking socket for up to a second; this sends the request on a non-blocking UDP socket
# and polls for the answer between asyncio sleeps. The server's name is resolved once per
# query (socket.getaddrinfo blocks on the ESP32 while DNS answers; an IP address does not).
import asyncio
import socket
import struct

from kiosk import ticks
from kiosk.clock import EARLIEST_WALL, LATEST_WALL
from micropython import const

_NTP_TO_UNIX = const(2208988800)  # seconds from 1900-01-01 to 1970-01-01
_ERA = 0x100000000  # NTP seconds wrap in 2036: values below 2**31 are the next era
_POLL_MS = const(20)


async def query(host, ticks_ms, port=123, timeout_ms=2000):
    """Unix seconds from the NTP server at host; raises OSError on no or a bad answer."""
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        request = bytearray(48)
        request[0] = 0x23  # leap 0, version 4, mode 3 (client)
        s.sendto(request, addr)
        start = ticks_ms()
        while True:
            try:
                answer = s.recv(48)
                break
            except OSError:  # EAGAIN: nothing yet
                if ticks.diff(ticks_ms(), start) > timeout_ms:
                    raise OSError(110, "no NTP answer")  # ETIMEDOUT
                await asyncio.sleep_ms(_POLL_MS)
    finally:
        s.close()
    if len(answer) < 48 or answer[0] & 7 != 4 or not answer[1]:
        raise OSError(22, "not an NTP server answer")  # mode 4, stratum 1..15 (0: kiss)
    seconds = struct.unpack_from("!I", answer, 40)[0]  # transmit timestamp, seconds
    if seconds < 0x80000000:
        seconds += _ERA
    wall = seconds - _NTP_TO_UNIX
    if not EARLIEST_WALL <= wall <= LATEST_WALL:
        # A server that lost its own time answers 1900 or 2036; Clock.set_wall would
        # refuse it anyway, this says why.
        raise OSError(22, "NTP time %d is outside 2000-2100" % wall)
    return wall
