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
CONFIG_PIECE_HEAD = 4
"""Bytes before the config's own in an R frame (CONFIG READ's answer): the file's size and
the piece's offset, u16 LE each (the firmware's serial_sync._PIECE_HEAD)."""
MAX_INPUT_S = 600
"""The longest INPUT a kiosk takes: it reports presses and taps for at most this many seconds
(the firmware's hwtest.MAX_INPUT_S)."""
MIN_MAINTENANCE_S = 10
MAX_MAINTENANCE_S = 3600
"""The time MAINT may stop a kiosk's app for (the firmware's serial_sync constants of the
same names): the REPL is free meanwhile, and the kiosk restarts by itself after it."""
PATTERN_S = 120
"""Seconds a PATTERN stays on the glass before the kiosk gives the screen back to the survey
(the firmware's hwtest.PATTERN_S)."""
PATTERNS = ("checker", "border", "ink", "paper")
"""The test patterns PATTERN draws (the firmware's hwtest.PATTERNS)."""
