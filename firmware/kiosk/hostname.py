# Is a configured host a host name, or a mistake? Loaded only for a host that is not an
# IPv4 address (kiosk.config.is_ipv4): by the config validator for sync.ntp_server and by
# the push for sync.server_url's host. It runs on CPython too (the host's
# `deskpulse sync --config` check), so it imports nothing of MicroPython's.
#
# lwIP reads addresses as inet_aton does (esp-lwip src/core/ipv4/ip4_addr.c,
# ip4addr_aton): "010" is octal, "0x0a" hex, "10.1" a short form. So only plain dotted
# quads count as addresses here, and a host whose last label is all digits but is no
# such address is refused rather than sent somewhere unexpected.

from kiosk.config import is_ipv4

_DIGITS = "0123456789"
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def host_problem(where, value, hint=""):
    """Why value is neither a host name (ASCII letters, digits, '-' and '_' in
    dot-separated labels) nor an IPv4 address, or None; "" passes (the setting is then
    off). hint ends the sentence."""
    if not isinstance(value, str):
        return "%s must be text" % where
    if not value or is_ipv4(value):
        return None
    labels = value.split(".")
    ok = len(value) < 254
    for label in labels:
        if not ok:
            break
        ok = 0 < len(label) < 64 and label[0] != "-" and label[-1] != "-"
        for ch in label:
            if ch not in _NAME_CHARS:
                ok = False
    if ok:
        for ch in labels[-1]:  # a name's last label is never all digits
            if ch not in _DIGITS:
                return None
    return ("%s must be a host name or an IPv4 address, e.g. pool.ntp.org or 192.168.1.5 "
            "(got %r)%s" % (where, value, hint))
