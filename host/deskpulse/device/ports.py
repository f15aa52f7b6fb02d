"""Finding and opening a kiosk's USB serial port."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Protocol

import serial
from serial.tools import list_ports

from deskpulse.errors import DeskPulseError

try:
    import termios
except ImportError:  # Windows: pyserial raises SerialException only
    _OPEN_ERRORS: tuple[type[Exception], ...] = (serial.SerialException,)
else:
    # pyserial lets termios errors from configuring the port through unwrapped: EIO when
    # the device goes away while it opens (a board resetting, a simulator restarting).
    _OPEN_ERRORS = (serial.SerialException, termios.error)

BAUDRATE = 115200
READ_SLICE = 0.05
"""Seconds one read waits: short, so a command's deadline is kept to within this."""

USB_BRIDGES: dict[tuple[int, int], str] = {
    (0x10C4, 0xEA60): "CP210x",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x0403, 0x6015): "FTDI FT231X",
    (0x303A, 0x1001): "Espressif USB serial/JTAG",
}
"""USB-to-serial bridges found on ESP32 boards, by (VID, PID)."""

DIALOUT_HINT = (
    "check that the cable carries data (some are power only) and that you may use serial "
    "ports: sudo usermod -aG dialout $USER, then log out and in again"
)


class SerialPort(Protocol):
    """What sync needs of a port (a pyserial Serial, or a test's stand-in)."""

    def write(self, data: bytes, /) -> int | None: ...
    def read(self, size: int = 1, /) -> bytes: ...
    @property
    def in_waiting(self) -> int: ...
    def reset_input_buffer(self) -> None: ...


@dataclass(frozen=True, slots=True)
class UsbPort:
    device: str
    bridge: str
    description: str
    serial_number: str | None

    def __str__(self) -> str:
        serial_text = f", serial {self.serial_number}" if self.serial_number else ""
        return f"{self.device} ({self.bridge}: {self.description}{serial_text})"


def find_ports() -> list[UsbPort]:
    """Serial ports whose USB VID:PID is a bridge that ESP32 boards use."""
    found = []
    for info in list_ports.comports():
        bridge = USB_BRIDGES.get((info.vid or -1, info.pid or -1))
        if bridge is not None:
            found.append(UsbPort(info.device, bridge, info.description or "",
                                 info.serial_number))
    return sorted(found, key=lambda p: p.device)


def resolve_port(port: str) -> str:
    """`port` itself, or for "auto" the single ESP32 USB port (an error names them all
    when there are several, and gives the usual fixes when there is none)."""
    if port != "auto":
        return port
    ports = find_ports()
    if len(ports) == 1:
        return ports[0].device
    if not ports:
        raise DeskPulseError(
            "no ESP32 USB serial port found (CP210x, CH34x, FTDI or Espressif USB); "
            + DIALOUT_HINT)
    listing = "; ".join(str(p) for p in ports)
    raise DeskPulseError(f"{len(ports)} ESP32 USB ports found, pick one with --port: {listing}")


def _open_failure(path: str, exc: Exception) -> DeskPulseError:
    if isinstance(exc, serial.SerialException):
        code, reason = exc.errno, str(exc)
    else:  # termios.error: (errno, message)
        code, reason = exc.args[0], exc.args[1]
    if code in (errno.EACCES, errno.EPERM):
        return DeskPulseError(f"permission denied on {path}: {DIALOUT_HINT}")
    if code == errno.ENOENT:
        return DeskPulseError(f"no serial port {path}: is the kiosk plugged in? "
                              "(try --port auto)")
    if code in (errno.EAGAIN, errno.EWOULDBLOCK) or "lock" in reason.lower():
        return DeskPulseError(f"{path} is in use by another program")
    return DeskPulseError(f"cannot open {path}: {reason}")


def open_port(path: str, baudrate: int = BAUDRATE) -> serial.Serial:
    """Open a kiosk's port without resetting it: on most ESP32 boards DTR and RTS drive
    GPIO0 and EN, so both are set inactive before the port opens (as esptool and mpremote
    do). Stale console output is flushed."""
    port = serial.Serial()
    port.port = path
    port.baudrate = baudrate
    port.timeout = READ_SLICE
    port.write_timeout = 10
    port.exclusive = True  # two syncs on one kiosk would interleave their commands
    port.dtr = False
    port.rts = False
    try:
        port.open()
    except _OPEN_ERRORS as exc:
        raise _open_failure(path, exc) from exc
    port.reset_input_buffer()
    return port
