"""A software stand-in for the ESP32 ROM serial loader, served on 127.0.0.1 so that the
real esptool can flash it through pyserial's `socket://127.0.0.1:PORT` URL.

It speaks the protocol of Espressif's "Serial Protocol" page (esptool's
docs/en/advanced-topics/serial-protocol.rst) the way esptool 5 drives it
(esptool/loader.py, targets/esp32.py, cmds.py): SLIP frames; a request is direction 0x00,
command, size, checksum, data; a reply is direction 0x01, the same command, size, a 32-bit
value (READ_REG's result) and data ending in status bytes, four from the ESP32 ROM
(status, error, two reserved). It holds one emulated chip with a NOR flash (an erase sets
0xFF, programming can only clear bits, an address past the end wraps, as on the real
part) and the registers esptool reads: the chip-detect magic word, the eFuses with the MAC
and the revision, the UART divider, and the SPI1 "user command" registers through which
esptool asks the flash for its JEDEC id (RDID) and its SFDP table.

With --no-stub esptool talks to the ROM loader alone. Without it, esptool uploads its
flasher stub into RAM and jumps to it; the stand-in has no CPU, so when the entry point is
the one of a stub shipped with the installed esptool it answers "OHAI" and from then on
speaks the stub's dialect as espressif/esp-flasher-stub's src/command_handler.c does
(2 status bytes, ERASE_FLASH, ERASE_REGION, the acknowledged READ_FLASH, raw MD5). That is
the protocol, not the stub's code: docs/hardware.md, "The ROM loader stand-in", says what
only a board can confirm.

Each TCP connection is one session with a chip just reset into download mode (a
technician holding BOOT): not attached, not synced, 115200 baud, the ROM (not the stub)
answering, and the flash keeping its contents. One session at a time, like a serial port.

Anything the loader does not implement gets its error status at once (ROM: 0x05, "the
received message is invalid"; stub: 0xC300, "invalid command"), never silence; only a chip
that has left the loader (FLASH_END to the ROM, RAM code that is no stub) or was never in
it (`download_mode=False`) stays quiet, as a real one would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType

import esptool

MIB = 1024 * 1024
SECTOR = 0x1000

# Commands (Espressif "Serial Protocol", Commands; esptool ESPLoader.ESP_CMDS).
FLASH_BEGIN = 0x02
FLASH_DATA = 0x03
FLASH_END = 0x04
MEM_BEGIN = 0x05
MEM_END = 0x06
MEM_DATA = 0x07
SYNC = 0x08
WRITE_REG = 0x09
READ_REG = 0x0A
SPI_SET_PARAMS = 0x0B
SPI_ATTACH = 0x0D
READ_FLASH_SLOW = 0x0E  # ROM only
CHANGE_BAUDRATE = 0x0F
FLASH_DEFL_BEGIN = 0x10
FLASH_DEFL_DATA = 0x11
FLASH_DEFL_END = 0x12
SPI_FLASH_MD5 = 0x13
GET_SECURITY_INFO = 0x14  # not in the ESP32 ROM; ESP32-S2 and later
ERASE_FLASH = 0xD0  # stub only, like the three below
ERASE_REGION = 0xD1
READ_FLASH = 0xD2
RUN_USER_CODE = 0xD3

# ROM loader error codes ("Serial Protocol", ROM Loader Errors). A handler returns these;
# in the stub's dialect each maps to the stub's own code (STUB_ERRORS).
ERR_INVALID_MESSAGE = 0x05
ERR_FAILED = 0x06
ERR_CHECKSUM = 0x07
ERR_FLASH_WRITE = 0x08
ERR_FLASH_READ = 0x09
ERR_READ_LENGTH = 0x0A
ERR_DEFLATE = 0x0B
UNKNOWN_COMMAND = 0x100  # the stand-in's marker; the ROM says 0x05 for it too

# esp-flasher-stub src/commands.h: 16-bit codes, sent big-endian.
STUB_ERRORS = {
    ERR_INVALID_MESSAGE: 0xC000,  # bad data length
    ERR_FAILED: 0xC600,  # not in flash mode
    ERR_CHECKSUM: 0xC100,
    ERR_FLASH_WRITE: 0xC400,  # failed SPI operation
    ERR_FLASH_READ: 0xC400,
    ERR_READ_LENGTH: 0xC000,
    ERR_DEFLATE: 0xC700,  # inflate error
    UNKNOWN_COMMAND: 0xC300,  # invalid command
}

SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
# Both loaders answer one SYNC eight times; esptool reads the first and then seven more.
SYNC_REPLIES = 8
# The ROM's SYNC replies carry a non-zero value, the stub's 0: that is how esptool tells
# them apart. Real ESP32 traces in esptool's issues show the payload's first word.
ROM_SYNC_VALUE = 0x20120707
CHECKSUM_SEED = 0xEF
READ_FLASH_SLOW_BLOCK = 64  # the ROM reads at most 64 bytes a command and sends 64
ROM_BAUD = 115200
ROM_DEFAULT_CHIP_SIZE = 2 * MIB  # until SPI_SET_PARAMS (esptool cmds.erase_region's note)
STUB_GREETING = b"OHAI"

# SPI "user command" register bits as esptool's run_spiflash_command sets them.
SPI_CMD_USR = 1 << 18
SPI_USR_ADDR = 1 << 30
SPI_USR_MISO = 1 << 28
SPI_USR_MOSI = 1 << 27
SPI_USR_ADDR_LEN_SHIFT = 26
SPI_ADDR_REG = 0x04

# SPI NOR flash commands the emulated flash chip answers.
RDID = 0x9F
RDSFDP = 0x5A
READ_STATUS = {0x05: 0, 0x35: 8, 0x15: 16}  # RDSR, RDSR2, RDSR3: the byte's shift
WRITE_STATUS = {0x01: 0, 0x31: 8, 0x11: 16}  # WRSR, WRSR2, WRSR3
WREN, WRDI = 0x06, 0x04
STATUS_WEL = 0x02
WINBOND = 0xEF


class StandInError(RuntimeError):
    """A misuse of the stand-in itself, raised in the test process."""


@dataclass(frozen=True)
class Chip:
    """What tells one chip model's loader apart, as esptool's target classes read it."""

    name: str
    stub_json: str  # esptool/targets/stub_flasher/<n>/<this>
    magic: int | None  # the word at 0x40001000 (ESP8266, ESP32, ESP32-S2 detection)
    security_chip_id: int | None  # GET_SECURITY_INFO's chip id; None: the ROM lacks it
    spi_base: int
    spi_usr: int
    spi_usr1: int
    spi_usr2: int
    spi_mosi_dlen: int
    spi_miso_dlen: int
    spi_w0: int
    spi_addr_msb: bool  # the address sits in the register's top bits (ESP32 only)
    rom_begin_words: int  # ROM FLASH_(DEFL_)BEGIN words: 4 on ESP32, 5 (encrypt) later
    uart_clkdiv: int  # the register whose divider esptool uses to guess the crystal


ESP32 = Chip(
    name="ESP32", stub_json="esp32.json", magic=0x00F01D83, security_chip_id=None,
    spi_base=0x3FF42000, spi_usr=0x1C, spi_usr1=0x20, spi_usr2=0x24,
    spi_mosi_dlen=0x28, spi_miso_dlen=0x2C, spi_w0=0x80, spi_addr_msb=True,
    rom_begin_words=4, uart_clkdiv=0x3FF40014,
)
ESP32S3 = Chip(
    name="ESP32-S3", stub_json="esp32s3.json", magic=None, security_chip_id=9,
    spi_base=0x60002000, spi_usr=0x18, spi_usr1=0x1C, spi_usr2=0x20,
    spi_mosi_dlen=0x24, spi_miso_dlen=0x28, spi_w0=0x58, spi_addr_msb=False,
    rom_begin_words=5, uart_clkdiv=0x60000014,
)
CHIPS = {"esp32": ESP32, "esp32s3": ESP32S3}

CHIP_DETECT_MAGIC_REG = 0x40001000
ESP32_EFUSE = 0x3FF5A000
ESP32_APB_CTL_DATE = 0x3FF6607C
ESP32_RTC_CALI = 0x3FF5F06C
ESP32_GPIO_STRAP = 0x3FF44038
ESP32S3_EFUSE_BLOCK1 = 0x60007044
XTAL_HZ = 40_000_000


def checksum(data: bytes) -> int:
    """The loader's checksum of a data packet's payload (XOR seeded with 0xEF)."""
    state = CHECKSUM_SEED
    for byte in data:
        state ^= byte
    return state


def slip_encode(packet: bytes) -> bytes:
    return b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


@cache
def stub_entry_points(stub_json: str) -> frozenset[int]:
    """Entry points of the flasher stubs the installed esptool can upload for a chip."""
    root = Path(esptool.__file__).parent / "targets" / "stub_flasher"
    return frozenset(json.loads(path.read_text())["entry"]
                     for path in root.glob(f"*/{stub_json}"))


class SlipDecoder:
    """Collects whole SLIP frames from a byte stream; bytes between frames are dropped."""

    def __init__(self) -> None:
        self._frame: bytearray | None = None
        self._escaped = False

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for byte in data:
            if byte == 0xC0:
                if self._frame:
                    frames.append(bytes(self._frame))
                self._frame = bytearray()
                self._escaped = False
            elif self._frame is None:
                continue
            elif self._escaped:
                self._frame.append({0xDC: 0xC0, 0xDD: 0xDB}.get(byte, byte))
                self._escaped = False
            elif byte == 0xDB:
                self._escaped = True
            else:
                self._frame.append(byte)
        return frames


class FlashChip:
    """A SPI NOR flash: JEDEC id, an SFDP table, status registers, erase and program."""

    def __init__(self, size: int, manufacturer: int = WINBOND, memory_type: int = 0x40) -> None:
        if size < SECTOR or size & (size - 1):
            raise StandInError(f"flash size must be a power of two of at least 4 KiB: {size}")
        self.size = size
        self.memory = bytearray(b"\xff" * size)
        # JEDEC capacity byte: log2 of the size (0x16 for 4 MiB), which is what esptool's
        # DETECTED_FLASH_SIZES maps back to "4MB".
        self.jedec_id = bytes((manufacturer, memory_type, size.bit_length() - 1))
        self.status = 0
        self.sfdp = self._sfdp_table(manufacturer)

    @staticmethod
    def _sfdp_table(manufacturer: int) -> bytes:
        # JESD216 layout: "SFDP", revision 1.6, two parameter headers (the JEDEC basic
        # table, then a vendor table whose id byte is the manufacturer: esptool reads it at
        # 0x10 to spot XMC chips). The tables themselves read 0xFF.
        header = b"SFDP" + bytes((0x06, 0x01, 0x01, 0xFF))
        basic = bytes((0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF))
        vendor = bytes((manufacturer, 0x00, 0x01, 0x03, 0x70, 0x00, 0x00, 0xFF))
        return (header + basic + vendor).ljust(0x100, b"\xff")

    def _spans(self, address: int, length: int) -> list[tuple[int, int]]:
        # A flash ignores the address bits above its size: an access past the end wraps.
        spans = []
        while length > 0:
            start = address % self.size
            step = min(length, self.size - start)
            spans.append((start, start + step))
            address += step
            length -= step
        return spans

    def read(self, address: int, length: int) -> bytes:
        return b"".join(bytes(self.memory[a:b]) for a, b in self._spans(address, length))

    def erase(self, address: int, length: int) -> None:
        """Erase every sector that [address, address + length) touches."""
        first = address - address % SECTOR
        last = address + length
        for start, end in self._spans(first, -(-(last - first) // SECTOR) * SECTOR):
            self.memory[start:end] = b"\xff" * (end - start)

    def program(self, address: int, data: bytes) -> bool:
        """Program `data` (bits only go from 1 to 0); True when it reads back equal."""
        done = 0
        for start, end in self._spans(address, len(data)):
            chunk = data[done:done + end - start]
            old = self.memory[start:end]
            self.memory[start:end] = bytes(a & b for a, b in zip(old, chunk, strict=True))
            done += end - start
        return self.read(address, len(data)) == data

    def command(self, opcode: int, address: int, mosi: bytes, miso_bytes: int) -> bytes:
        """One SPI transaction: the bytes the flash drives on MISO."""
        reply = b""
        if opcode == RDID:
            reply = self.jedec_id
        elif opcode == RDSFDP:
            reply = self.sfdp[address:address + miso_bytes]
        elif opcode in READ_STATUS:
            reply = bytes(((self.status >> READ_STATUS[opcode]) & 0xFF,))
        elif opcode == WREN:
            self.status |= STATUS_WEL
        elif opcode == WRDI:
            self.status &= ~STATUS_WEL
        elif opcode in WRITE_STATUS and self.status & STATUS_WEL and mosi:
            shift = WRITE_STATUS[opcode]
            self.status = (self.status & ~(0xFF << shift)) | (mosi[0] << shift)
            self.status &= ~STATUS_WEL
        # Resets, power-down and unknown commands drive nothing: an idle line reads high.
        return (reply + b"\xff" * miso_bytes)[:miso_bytes]


class _Transfer:
    """A FLASH_BEGIN or FLASH_DEFL_BEGIN in progress."""

    def __init__(self, offset: int, size: int, blocks: int, block_size: int,
                 compressed: bool) -> None:
        self.offset = offset
        self.size = size
        self.blocks = blocks
        self.block_size = block_size
        self.next_seq = 0
        self.written = 0
        self.inflater = zlib.decompressobj() if compressed else None


class _FlashRead:
    """The stub's READ_FLASH: one packet in flight, each acknowledged by the host."""

    def __init__(self, offset: int, size: int, packet_size: int) -> None:
        self.offset = offset
        self.size = size
        self.packet_size = packet_size
        self.sent = 0
        self.digest = hashlib.md5()


class _Session:
    """What a reset clears: one TCP connection's worth of loader state."""

    def __init__(self) -> None:
        self.synced = False
        self.stub = False
        self.attached = False
        self.chip_size = ROM_DEFAULT_CHIP_SIZE
        self.baud = ROM_BAUD
        self.next_baud: int | None = None
        self.transfer: _Transfer | None = None
        self.ram_loading = False
        self.flash_read: _FlashRead | None = None
        self.left_loader = False


Handler = Callable[[_Session, int, bytes, int], list[bytes]]


class RomLoaderStandIn:
    """One emulated chip in its ROM download mode, served on 127.0.0.1 in a thread.

    `url` is what esptool takes as `-p`. `flash` is the flash as the chip holds it, to be
    read back byte for byte; `commands` lists every request's command byte in order, and
    `exits` how each session left the loader ("run" or "reboot" after FLASH_END, "ram"
    for RAM code that is no stub), so a test can tell what esptool did and did not do.
    `fail_next(command, error)` makes the next such request fail with that ROM error code.
    `paced` moves every byte at the session's baud rate (115200 until CHANGE_BAUDRATE).
    """

    def __init__(self, *, chip: str = "esp32", flash_size: int = 4 * MIB,
                 mac: str = "24:0a:c4:12:34:56", revision: tuple[int, int] = (3, 1),
                 download_mode: bool = True, paced: bool = False) -> None:
        if chip not in CHIPS:
            raise StandInError(f"unknown chip {chip!r}; known: {', '.join(CHIPS)}")
        self.chip = CHIPS[chip]
        self.flash_chip = FlashChip(flash_size)
        try:
            self.mac = bytes(int(part, 16) for part in mac.split(":"))
        except ValueError as error:
            raise StandInError(f"not a MAC: {mac!r}") from error
        if len(self.mac) != 6:
            raise StandInError(f"a MAC has six bytes: {mac!r}")
        if revision[0] not in range(4) or revision[1] not in range(4):
            raise StandInError(f"revision v{revision[0]}.{revision[1]}: major and minor 0-3")
        self.revision = revision
        self.download_mode = download_mode
        self.paced = paced
        self.registers = self._registers()
        self.commands: list[int] = []
        self.exits: list[str] = []
        self.sessions = 0
        self._faults: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"rom-loader-{self.port}",
                                        daemon=True)
        self._thread.start()

    # -- the test's side ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    @property
    def flash(self) -> bytes:
        with self._lock:
            return bytes(self.flash_chip.memory)

    def load(self, offset: int, data: bytes) -> None:
        """Put `data` into the flash as if written earlier (an old firmware, say)."""
        if offset < 0 or offset + len(data) > self.flash_chip.size:
            raise StandInError(f"{len(data)} bytes at {offset:#x} do not fit the flash")
        with self._lock:
            self.flash_chip.memory[offset:offset + len(data)] = data

    def fail_next(self, command: int, error: int) -> None:
        with self._lock:
            self._faults.setdefault(command, []).append(error)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    def __enter__(self) -> RomLoaderStandIn:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    # -- registers ----------------------------------------------------------------------

    def _registers(self) -> dict[int, int]:
        major, minor = self.revision
        mac_high = self.mac[0] << 8 | self.mac[1]
        mac_low = int.from_bytes(self.mac[2:], "big")
        if self.chip is ESP32S3:
            # esptool's ESP32S3ROM: MAC in eFuse block 1 words 0-1; minor revision in
            # word 3 bits 18-20 (and word 5 bit 23), major in word 5 bits 24-25.
            return {
                ESP32S3_EFUSE_BLOCK1: mac_low,
                ESP32S3_EFUSE_BLOCK1 + 4: mac_high,
                ESP32S3_EFUSE_BLOCK1 + 12: (minor & 7) << 18,
                ESP32S3_EFUSE_BLOCK1 + 20: (major & 3) << 24 | (minor >> 3 & 1) << 23,
            }
        # esptool's ESP32ROM reads the major revision from three bits (eFuse word 3 bit
        # 15, word 5 bit 20, APB_CTL_DATE bit 31: 0, 1, 3 or 7 for v0 to v3) and the minor
        # from word 5 bits 24-25. Word 3 also says package D0WD (bits 9-11 = 1) and a
        # 240 MHz rating (bit 13); word 4's low byte is the 8 MHz clock calibration that
        # change_baud takes with RTC_CALI to estimate the crystal the ROM measured.
        rev_bits = {0: 0, 1: 1, 2: 3, 3: 7}[major]
        return {
            CHIP_DETECT_MAGIC_REG: ESP32.magic or 0,
            ESP32_EFUSE + 4: mac_low,
            ESP32_EFUSE + 8: mac_high,  # bits 16-23 would hold the MAC's CRC8
            ESP32_EFUSE + 12: 0x2200 | (rev_bits & 1) << 15,
            ESP32_EFUSE + 16: 0x0531,
            ESP32_EFUSE + 20: (rev_bits >> 1 & 1) << 20 | (minor & 3) << 24,
            ESP32_APB_CTL_DATE: 0x16042000 | (rev_bits >> 2 & 1) << 31,
            ESP32_RTC_CALI: 2090 << 7,  # with 0x31 above: a ROM estimate of ~40 MHz
            ESP32_GPIO_STRAP: 0x13,  # GPIO0 low (download boot); bit 5 clear: 3.3 V flash
        }

    def _read_register(self, session: _Session, address: int) -> int:
        if address == self.chip.uart_clkdiv:
            # The divider the ROM's autobaud found: crystal / baud, 1/16ths above bit 20.
            sixteenths = round(XTAL_HZ * 16 / session.baud)
            return (sixteenths % 16) << 20 | sixteenths // 16
        # Memory nobody set reads 0 here; on a chip it holds whatever it holds.
        return self.registers.get(address, 0)

    def _write_register(self, address: int, value: int, mask: int) -> None:
        old = self.registers.get(address, 0)
        self.registers[address] = (old & ~mask | value & mask) & 0xFFFFFFFF
        if address == self.chip.spi_base and self.registers[address] & SPI_CMD_USR:
            self._run_spi_command()
            self.registers[address] &= ~SPI_CMD_USR  # the peripheral is done at once

    def _run_spi_command(self) -> None:
        chip, regs, base = self.chip, self.registers, self.chip.spi_base
        usr = regs.get(base + chip.spi_usr, 0)
        opcode = regs.get(base + chip.spi_usr2, 0) & 0xFF
        address = 0
        if usr & SPI_USR_ADDR:
            address_bits = (regs.get(base + chip.spi_usr1, 0) >> SPI_USR_ADDR_LEN_SHIFT) + 1
            address = regs.get(base + SPI_ADDR_REG, 0)
            if chip.spi_addr_msb:
                address >>= 32 - address_bits
        mosi = b""
        if usr & SPI_USR_MOSI:
            mosi_bytes = (regs.get(base + chip.spi_mosi_dlen, 0) + 8) // 8
            words = [regs.get(base + chip.spi_w0 + 4 * i, 0) for i in range(16)]
            mosi = struct.pack("<16I", *words)[:mosi_bytes]
        miso_bytes = 0
        if usr & SPI_USR_MISO:
            miso_bytes = (regs.get(base + chip.spi_miso_dlen, 0) + 8) // 8
        reply = self.flash_chip.command(opcode, address, mosi, miso_bytes)
        padded = reply + b"\x00" * (-len(reply) % 4)
        for i, word in enumerate(struct.unpack(f"<{len(padded) // 4}I", padded)):
            regs[base + chip.spi_w0 + 4 * i] = word

    # -- the server ---------------------------------------------------------------------

    def _serve(self) -> None:
        session: tuple[socket.socket, threading.Thread] | None = None
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            # Opening the port again resets the chip: the newest opener has it. (A caller
            # can leak the previous one: esptool keeps its port open when it refuses a
            # chip inside esptool.main.)
            if session is not None:
                self._end(*session)
            self.sessions += 1
            thread = threading.Thread(target=self._session, args=(connection,),
                                      name=f"rom-loader-{self.port}-{self.sessions}",
                                      daemon=True)
            thread.start()
            session = (connection, thread)
        if session is not None:
            self._end(*session)

    @staticmethod
    def _end(connection: socket.socket, thread: threading.Thread) -> None:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=5)
        connection.close()

    def _session(self, connection: socket.socket) -> None:
        connection.settimeout(0.1)
        # A UART has no Nagle: each reply leaves as soon as it is written.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session()
        decoder = SlipDecoder()
        while not self._stop.is_set():
            try:
                data = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self._pace(session, len(data))
            if not self.download_mode or session.left_loader:
                continue  # an app (or a chip outside download mode) ignores loader frames
            for frame in decoder.feed(data):
                for reply in self._handle(session, frame):
                    self._pace(session, len(reply))
                    try:
                        connection.sendall(reply)
                    except OSError:
                        return
                if session.next_baud is not None:
                    session.baud, session.next_baud = session.next_baud, None

    def _pace(self, session: _Session, count: int) -> None:
        if self.paced:
            time.sleep(count * 10 / session.baud)  # 8 data bits, a start and a stop bit

    # -- the protocol -------------------------------------------------------------------

    def _reply(self, session: _Session, command: int, value: int = 0, data: bytes = b"",
               error: int | None = None) -> bytes:
        if session.stub:
            code = 0 if error is None else STUB_ERRORS.get(error, 0xC000)
            status = struct.pack(">H", code)
        elif error is None:
            status = bytes(4)
        else:
            status = bytes((1, ERR_INVALID_MESSAGE if error == UNKNOWN_COMMAND else error,
                            0, 0))
        body = data + status
        return slip_encode(struct.pack("<BBHI", 1, command, len(body), value) + body)

    def _handle(self, session: _Session, frame: bytes) -> list[bytes]:
        with self._lock:
            if session.flash_read is not None:
                return self._flash_read_ack(session, frame)
            if len(frame) < 8 or frame[0] != 0x00:
                return []  # not a request: the loader waits for the next frame
            _, command, size, check = struct.unpack("<BBHI", frame[:8])
            data = frame[8:]
            if not session.synced and command != SYNC:
                return []  # before autobaud has locked on, the ROM hears only noise
            self.commands.append(command)
            if size != len(data):
                return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
            faults = self._faults.get(command)
            if faults:
                return [self._reply(session, command, error=faults.pop(0))]
            handler = self._handlers(session).get(command)
            if handler is None:
                return [self._reply(session, command, error=UNKNOWN_COMMAND)]
            return handler(session, command, data, check)

    def _handlers(self, session: _Session) -> dict[int, Handler]:
        handlers: dict[int, Handler] = {
            SYNC: self._sync, READ_REG: self._read_reg, WRITE_REG: self._write_reg,
            SPI_ATTACH: self._spi_attach, SPI_SET_PARAMS: self._spi_set_params,
            CHANGE_BAUDRATE: self._change_baudrate,
            FLASH_BEGIN: self._flash_begin, FLASH_DEFL_BEGIN: self._flash_begin,
            FLASH_DATA: self._flash_data, FLASH_DEFL_DATA: self._flash_data,
            FLASH_END: self._flash_end, FLASH_DEFL_END: self._flash_end,
            SPI_FLASH_MD5: self._md5,
            MEM_BEGIN: self._mem_begin, MEM_DATA: self._mem_data, MEM_END: self._mem_end,
        }
        if self.chip.security_chip_id is not None:
            handlers[GET_SECURITY_INFO] = self._security_info
        if session.stub:
            handlers.update({ERASE_FLASH: self._erase_flash, ERASE_REGION: self._erase_region,
                             READ_FLASH: self._read_flash})
        else:
            handlers[READ_FLASH_SLOW] = self._read_flash_slow
        return handlers

    def _sync(self, session: _Session, command: int, data: bytes, _: int) -> list[bytes]:
        if data != SYNC_PAYLOAD:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        session.synced = True
        value = 0 if session.stub else ROM_SYNC_VALUE
        return [self._reply(session, command, value)] * SYNC_REPLIES

    def _read_reg(self, session: _Session, command: int, data: bytes, _: int) -> list[bytes]:
        if len(data) != 4:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        (address,) = struct.unpack("<I", data)
        return [self._reply(session, command, self._read_register(session, address))]

    def _write_reg(self, session: _Session, command: int, data: bytes, _: int) -> list[bytes]:
        # Four words a write (address, value, mask, delay); esptool appends a second,
        # dummy one when it wants a delay after the first.
        if not data or len(data) % 16:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        for offset in range(0, len(data), 16):
            address, value, mask, _delay = struct.unpack_from("<4I", data, offset)
            self._write_register(address, value, mask)
        return [self._reply(session, command)]

    def _security_info(self, session: _Session, command: int, data: bytes,
                       _: int) -> list[bytes]:
        if data:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        # flags, flash_crypt_cnt, seven key purposes, chip id, eco version
        info = struct.pack("<IB7BII", 0, 0, *bytes(7), self.chip.security_chip_id or 0, 0)
        return [self._reply(session, command, data=info)]

    def _spi_attach(self, session: _Session, command: int, data: bytes, _: int) -> list[bytes]:
        # The ROM takes a second word (the "is legacy" byte and padding); the stub does not.
        if len(data) != (4 if session.stub else 8):
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        session.attached = True
        return [self._reply(session, command)]

    def _spi_set_params(self, session: _Session, command: int, data: bytes,
                        _: int) -> list[bytes]:
        if len(data) != 24:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        _id, total, _block, sector, _page, _mask = struct.unpack("<6I", data)
        if sector != SECTOR or total == 0:
            return [self._reply(session, command, error=ERR_FAILED)]
        session.chip_size = total
        return [self._reply(session, command)]

    def _change_baudrate(self, session: _Session, command: int, data: bytes,
                         _: int) -> list[bytes]:
        if len(data) != 8:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        new_baud, _old = struct.unpack("<II", data)
        session.next_baud = max(new_baud, 300)  # once the answer has left at the old rate
        return [self._reply(session, command)]

    def _flash_begin(self, session: _Session, command: int, data: bytes,
                     _: int) -> list[bytes]:
        sizes = (16, 20) if session.stub else (4 * self.chip.rom_begin_words,)
        if len(data) not in sizes:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        size, blocks, block_size, offset = struct.unpack_from("<4I", data)
        # An empty FLASH_BEGIN touches no flash (esptool's run and soft reset send one
        # before FLASH_END); anything else needs SPI_ATTACH first on the ROM.
        if size and not session.attached:
            return [self._reply(session, command, error=ERR_FAILED)]
        if offset + size > session.chip_size or (blocks and not block_size):
            return [self._reply(session, command, error=ERR_FAILED)]
        # The ROM erases the whole region up front, the stub as it goes: the same sectors.
        self.flash_chip.erase(offset, size)
        session.transfer = _Transfer(offset, size, blocks, block_size,
                                     compressed=command == FLASH_DEFL_BEGIN)
        return [self._reply(session, command)]

    def _flash_data(self, session: _Session, command: int, data: bytes,
                    check: int) -> list[bytes]:
        if len(data) < 16:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        length, seq, _, _ = struct.unpack_from("<4I", data)
        payload = data[16:]
        if length != len(payload):
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        if checksum(payload) != check & 0xFF:
            return [self._reply(session, command, error=ERR_CHECKSUM)]
        transfer = session.transfer
        compressed = command == FLASH_DEFL_DATA
        if transfer is None or (transfer.inflater is not None) != compressed:
            return [self._reply(session, command, error=ERR_FAILED)]
        if seq != transfer.next_seq or seq >= transfer.blocks:
            return [self._reply(session, command, error=ERR_FAILED)]
        if transfer.inflater is not None:
            try:
                chunk = transfer.inflater.decompress(payload)
            except zlib.error:
                return [self._reply(session, command, error=ERR_DEFLATE)]
            if transfer.written + len(chunk) > transfer.size:
                return [self._reply(session, command, error=ERR_DEFLATE)]
            address = transfer.offset + transfer.written
        else:
            if length > transfer.block_size:
                return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
            address = transfer.offset + seq * transfer.block_size
            # The last block comes padded with 0xFF; the stub writes only what FLASH_BEGIN
            # announced, the ROM the whole block (0xFF programs nothing).
            chunk = payload[:max(0, transfer.size - seq * transfer.block_size)] \
                if session.stub else payload
        if not self.flash_chip.program(address, chunk):
            return [self._reply(session, command, error=ERR_FLASH_WRITE)]
        transfer.written += len(chunk)
        transfer.next_seq += 1
        return [self._reply(session, command)]

    def _flash_end(self, session: _Session, command: int, data: bytes, _: int) -> list[bytes]:
        if len(data) != 4:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        (stay_running,) = struct.unpack("<I", data)
        transfer, session.transfer = session.transfer, None
        if session.stub:
            # esp-flasher-stub: only after a whole transfer, and it stays (its reboot is a
            # TODO); esptool sends this to wait until the last block is in flash.
            if transfer is None or transfer.written < transfer.size:
                return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
            return [self._reply(session, command)]
        # The ROM answers, then runs the app in flash (1) or resets (0): with BOOT
        # released the app starts either way, and the loader is gone.
        self.exits.append("run" if stay_running else "reboot")
        session.left_loader = True
        return [self._reply(session, command)]

    def _md5(self, session: _Session, command: int, data: bytes, _: int) -> list[bytes]:
        if len(data) != 16:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        address, size, _, _ = struct.unpack("<4I", data)
        if not session.attached or address + size > session.chip_size:
            return [self._reply(session, command, error=ERR_FLASH_READ)]
        digest = hashlib.md5(self.flash_chip.read(address, size))
        # The ROM sends 32 hex digits, the stub 16 raw bytes.
        body = digest.digest() if session.stub else digest.hexdigest().encode("ascii")
        return [self._reply(session, command, data=body)]

    def _read_flash_slow(self, session: _Session, command: int, data: bytes,
                         _: int) -> list[bytes]:
        if len(data) != 8:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        address, length = struct.unpack("<II", data)
        if length > READ_FLASH_SLOW_BLOCK:
            return [self._reply(session, command, error=ERR_READ_LENGTH)]
        if not session.attached or address + length > session.chip_size:
            return [self._reply(session, command, error=ERR_FLASH_READ)]
        block = self.flash_chip.read(address, length).ljust(READ_FLASH_SLOW_BLOCK, b"\xff")
        return [self._reply(session, command, data=block)]

    def _mem_begin(self, session: _Session, command: int, data: bytes, _: int) -> list[bytes]:
        if len(data) != 16:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        session.ram_loading = True
        return [self._reply(session, command)]

    def _mem_data(self, session: _Session, command: int, data: bytes,
                  check: int) -> list[bytes]:
        if len(data) < 16 or struct.unpack_from("<I", data)[0] != len(data) - 16:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        if checksum(data[16:]) != check & 0xFF:
            return [self._reply(session, command, error=ERR_CHECKSUM)]
        if not session.ram_loading:
            return [self._reply(session, command, error=ERR_FAILED)]
        return [self._reply(session, command)]  # RAM is not kept: nothing runs it

    def _mem_end(self, session: _Session, command: int, data: bytes, _: int) -> list[bytes]:
        if len(data) != 8:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        if not session.ram_loading:
            return [self._reply(session, command, error=ERR_FAILED)]
        stay, entry = struct.unpack("<II", data)
        session.ram_loading = False
        replies = [self._reply(session, command)]
        if stay:
            return replies
        if entry in stub_entry_points(self.chip.stub_json):
            # The stub starts, greets, and answers from now on; it attaches the flash itself.
            session.stub = True
            session.attached = True
            return [*replies, slip_encode(STUB_GREETING)]
        # Other RAM code: the stand-in has no CPU, so the chip goes quiet.
        self.exits.append("ram")
        session.left_loader = True
        return replies

    def _erase_flash(self, session: _Session, command: int, data: bytes,
                     _: int) -> list[bytes]:
        if data:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        self.flash_chip.erase(0, self.flash_chip.size)
        return [self._reply(session, command)]

    def _erase_region(self, session: _Session, command: int, data: bytes,
                      _: int) -> list[bytes]:
        if len(data) != 8:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        offset, size = struct.unpack("<II", data)
        if offset % SECTOR or size % SECTOR:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        if offset + size > session.chip_size:
            return [self._reply(session, command, error=ERR_FLASH_WRITE)]
        self.flash_chip.erase(offset, size)
        return [self._reply(session, command)]

    def _read_flash(self, session: _Session, command: int, data: bytes,
                    _: int) -> list[bytes]:
        if len(data) != 16:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        offset, size, packet_size, _in_flight = struct.unpack("<4I", data)
        if not 0 < packet_size <= SECTOR or offset + size > session.chip_size:
            return [self._reply(session, command, error=ERR_INVALID_MESSAGE)]
        # esp-flasher-stub keeps one packet in flight whatever the host asks for.
        session.flash_read = _FlashRead(offset, size, packet_size)
        return [self._reply(session, command), *self._flash_read_next(session)]

    def _flash_read_next(self, session: _Session) -> list[bytes]:
        reading = session.flash_read
        if reading is None:
            return []
        if reading.sent == reading.size:
            session.flash_read = None
            return [slip_encode(reading.digest.digest())]
        step = min(reading.packet_size, reading.size - reading.sent)
        packet = self.flash_chip.read(reading.offset + reading.sent, step)
        reading.digest.update(packet)
        reading.sent += step
        return [slip_encode(packet)]

    def _flash_read_ack(self, session: _Session, frame: bytes) -> list[bytes]:
        reading = session.flash_read
        if reading is None:
            return []
        if len(frame) != 4:
            session.flash_read = None  # the stub gives up on a garbled acknowledgement
            return []
        (acknowledged,) = struct.unpack("<I", frame)
        if acknowledged != reading.sent:
            return []
        return self._flash_read_next(session)
