# A simulated NOR flash block device for LittleFS, with the extended block interface
# (readblocks/writeblocks with offsets, ioctl erase) that vfs.VfsLfs2 uses on the ESP32.
#
# It follows NOR rules: an erase sets a block to 0xFF, a program can only clear bits
# (new = old & data). It counts erases, programs, bytes programmed, reads and bytes read
# (what LittleFS's own work costs, e.g. walking its metadata), and can cut the
# power at a given operation: that operation is torn (only part of it reaches the
# flash) and every later one fails with EIO, as if the chip had lost power.
from micropython import const

_EIO = const(-5)
BLOCK_SIZE = const(4096)


class RamImage:
    def __init__(self, size):
        self.data = bytearray(size)
        blank = b"\xff" * BLOCK_SIZE
        for offset in range(0, size, BLOCK_SIZE):
            self.data[offset : offset + BLOCK_SIZE] = blank

    def read(self, offset, buf):
        buf[:] = memoryview(self.data)[offset : offset + len(buf)]

    def write(self, offset, data):
        self.data[offset : offset + len(data)] = data


class FileImage:
    """An image file on the host, so a simulated device keeps its flash across runs."""

    def __init__(self, path, size):
        try:
            self.file = open(path, "r+b")
        except OSError:
            self.file = open(path, "w+b")
            chunk = b"\xff" * BLOCK_SIZE
            for _ in range(size // BLOCK_SIZE):
                self.file.write(chunk)
            self.file.flush()

    def read(self, offset, buf):
        self.file.seek(offset)
        self.file.readinto(buf)

    def write(self, offset, data):
        self.file.seek(offset)
        self.file.write(data)
        self.file.flush()


class SimFlash:
    def __init__(self, image, block_count, block_size=BLOCK_SIZE):
        self.image = image
        self.block_count = block_count
        self.block_size = block_size
        self.ops = 0  # programs + erases so far
        self.erases = 0
        self.programs = 0
        self.bytes_programmed = 0
        self.reads = 0
        self.bytes_read = 0
        self.cut_at = -1  # operation index at which the power fails; -1 = never
        self.cut_fraction = 0.5  # how much of the torn operation reaches the flash
        self.dead = False
        self._scratch = bytearray(block_size)
        self._blank = b"\xff" * block_size

    def _power(self):
        """True when this operation completes; False when it is the one torn."""
        if self.dead:
            return None
        if self.ops == self.cut_at:
            self.dead = True
            self.ops += 1
            return False
        self.ops += 1
        return True

    def readblocks(self, block, buf, offset=0):
        if self.dead:
            return _EIO
        self.image.read(block * self.block_size + offset, buf)
        self.reads += 1
        self.bytes_read += len(buf)
        return 0

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            # Basic interface: erase the whole blocks first, then program.
            for i in range(len(buf) // self.block_size):
                rc = self.ioctl(6, block + i)
                if rc:
                    return rc
            offset = 0
        state = self._power()
        if state is None:
            return _EIO
        n = len(buf)
        if not state:
            n = int(n * self.cut_fraction)
        addr = block * self.block_size + offset
        old = memoryview(self._scratch)[:n]
        self.image.read(addr, old)
        for i in range(n):
            old[i] &= buf[i]
        self.image.write(addr, old)
        if not state:
            return _EIO
        self.programs += 1
        self.bytes_programmed += n
        return 0

    def ioctl(self, op, arg):
        if op == 4:
            return self.block_count
        if op == 5:
            return self.block_size
        if op == 6:
            state = self._power()
            if state is None:
                return _EIO
            n = self.block_size if state else int(self.block_size * self.cut_fraction)
            self.image.write(arg * self.block_size, memoryview(self._blank)[:n])
            if not state:
                return _EIO
            self.erases += 1
            return 0
        return 0
