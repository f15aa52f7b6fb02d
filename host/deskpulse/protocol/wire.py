"""The serial sync protocol's constants, which the firmware defines too (kiosk/serial_sync.py,
kiosk/config.py): tests/protocol/test_wire.py reads them from both and compares."""

PROTOCOL = 1
"""The protocol version HELLO carries; a kiosk speaking a newer one asks for an upgrade."""
PULL_BYTES = 4096
"""Bytes the host asks for per PULL (the device caps a batch at this anyway)."""
CONFIG_CHUNK = 96
"""Decoded bytes per CONFIG DATA line (docs/protocol.md)."""
MAX_CONFIG_BYTES = 8192
"""The largest config, compacted, that a kiosk takes (the firmware's config.MAX_FILE_BYTES)."""
