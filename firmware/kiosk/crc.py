# CRC used by every record on flash: CRC-32 (binascii, in C on every port) truncated to
# 16 bits. Records are at most 64 bytes, so 16 bits catch a torn or flipped record with
# probability 1 - 2**-16 while saving two bytes per response.
import binascii


def crc16(data):
    return binascii.crc32(data) & 0xFFFF
