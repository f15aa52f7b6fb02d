"""Printable labels for provisioned kiosks (issue 15): one per kiosk with its id, name,
location and key fingerprint, as text and as a QR code of the same text; never the key.

A sheet is an SVG page of A4 with 2 x 7 labels of 99.1 x 38.1 mm (the common 14-up
address-label layout, Avery L7163 and its equivalents), in millimetres, so it prints at
its true size from a browser or Inkscape with no scaling. Labels beyond 14 go on further
pages, further files. The QR code is drawn from segno's module matrix as one path of dark
runs, with the 4-module quiet zone the QR specification asks for.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deskpulse.errors import DeskPulseError

SVG_NS = "http://www.w3.org/2000/svg"
PAGE_MM = (210.0, 297.0)
LABEL_MM = (99.1, 38.1)
COLUMNS, ROWS = 2, 7
PER_PAGE = COLUMNS * ROWS
MARGIN_MM = (4.65, 15.15)  # left, top: where the first label of the sheet starts
GAP_MM = 2.5  # between the two columns
PAD_MM = 2.5  # inside a label, around the QR code and the text
QUIET_ZONE = 4  # modules of light margin around a QR code (ISO/IEC 18004)
FINGERPRINT_DIGITS = 8
TEXT_LIMIT = 30
"""Characters of a text line that fit beside the QR code at the sizes below; a longer
name or location is cut on the label with an ellipsis (the QR code keeps it whole)."""
ID_SIZE_MM, TEXT_SIZE_MM = 4.2, 3.2
ID_FITS = 22
"""Characters of an id that fit at ID_SIZE_MM; a longer one (ids take up to 32) is set
smaller rather than cut: the id is what the label is for."""
FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"


def key_fingerprint(key: bytes) -> str:
    """The first hex digits of the key's SHA-256: enough to tell which key a kiosk
    holds, nothing that helps anyone push as it."""
    return hashlib.sha256(key).hexdigest()[:FINGERPRINT_DIGITS]


def require_segno() -> None:
    try:
        import segno  # noqa: F401
    except ImportError:
        raise DeskPulseError("label sheets need segno (QR codes): pip install "
                             "'segno>=1.6,<2'") from None


@dataclass(frozen=True, slots=True)
class Label:
    device_id: str
    name: str | None
    location: str | None
    fingerprint: str

    def lines(self) -> list[str]:
        """What the label says, line by line; the QR code holds the same, joined by
        newlines."""
        return [self.device_id, *(t for t in (self.name, self.location) if t),
                f"key fingerprint {self.fingerprint}"]

    def qr_text(self) -> str:
        return "\n".join(self.lines())


def _qr_path(text: str, size_mm: float) -> tuple[str, float]:
    """The dark modules of text's QR code as SVG path data in a square of size_mm (quiet
    zone included), and the size of one module."""
    import segno

    code = segno.make(text, error="m", micro=False)
    matrix = code.matrix
    modules = len(matrix) + 2 * QUIET_ZONE
    unit = size_mm / modules
    runs: list[str] = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            start = x
            while x < len(row) and row[x]:
                x += 1
            runs.append(f"M{start + QUIET_ZONE},{y + QUIET_ZONE}h{x - start}v1h{start - x}z")
    return "".join(runs), unit


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 1] + "\u2026"


def _mm(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _label(parent: ET.Element, label: Label, x: float, y: float) -> None:
    width, height = LABEL_MM
    group = ET.SubElement(parent, "g", {"class": "label", "data-device-id": label.device_id,
                                        "transform": f"translate({_mm(x)},{_mm(y)})"})
    ET.SubElement(group, "rect", {"width": _mm(width), "height": _mm(height), "rx": "2",
                                  "fill": "none", "stroke": "#bbbbbb",
                                  "stroke-width": "0.2"})
    qr_size = height - 2 * PAD_MM
    path, unit = _qr_path(label.qr_text(), qr_size)
    qr = ET.SubElement(group, "g", {"class": "qr", "transform":
                                    f"translate({_mm(PAD_MM)},{_mm(PAD_MM)}) "
                                    f"scale({unit:.5f})"})
    ET.SubElement(qr, "rect", {"width": _mm(qr_size / unit), "height": _mm(qr_size / unit),
                               "fill": "#ffffff"})
    ET.SubElement(qr, "path", {"d": path, "fill": "#000000"})
    text_x = PAD_MM + qr_size + PAD_MM
    lines = label.lines()
    baseline = PAD_MM + ID_SIZE_MM + 1.5
    for n, line in enumerate(lines):
        first = n == 0
        size = TEXT_SIZE_MM
        if first:
            size = ID_SIZE_MM * min(1.0, ID_FITS / len(line))
        attributes = {"x": _mm(text_x), "y": _mm(baseline), "font-family": FONT,
                      "font-size": _mm(size), "fill": "#000000"}
        if first:
            attributes["font-weight"] = "bold"
        if n == len(lines) - 1:  # the fingerprint: monospace, at the label's foot
            attributes["font-family"] = "DejaVu Sans Mono, Courier New, monospace"
            attributes["y"] = _mm(height - PAD_MM - 1.0)
        element = ET.SubElement(group, "text", attributes)
        element.text = line if first or n == len(lines) - 1 else _cut(line)
        baseline += max(size, TEXT_SIZE_MM) + 2.2


def sheet_svg(labels: Sequence[Label]) -> bytes:
    """One A4 page holding up to PER_PAGE labels, row by row."""
    if len(labels) > PER_PAGE:
        raise ValueError(f"{len(labels)} labels do not fit one sheet of {PER_PAGE}")
    width, height = PAGE_MM
    ET.register_namespace("", SVG_NS)
    root = ET.Element("svg", {"xmlns": SVG_NS, "version": "1.1",
                              "width": f"{_mm(width)}mm", "height": f"{_mm(height)}mm",
                              "viewBox": f"0 0 {_mm(width)} {_mm(height)}"})
    title = ET.SubElement(root, "title")
    title.text = "DeskPulse kiosk labels"
    for n, label in enumerate(labels):
        column, row = n % COLUMNS, n // COLUMNS
        x = MARGIN_MM[0] + column * (LABEL_MM[0] + GAP_MM)
        y = MARGIN_MM[1] + row * LABEL_MM[1]
        _label(root, label, x, y)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def page_paths(path: str | os.PathLike[str], pages: int) -> list[Path]:
    """labels.svg, then labels-2.svg, labels-3.svg... for the further pages."""
    first = Path(path)
    return [first] + [first.with_name(f"{first.stem}-{n}{first.suffix}")
                      for n in range(2, pages + 1)]


def check_target(path: str | os.PathLike[str]) -> None:
    """Whether a sheet can go to path, asked before any board is touched."""
    target = Path(path)
    if target.is_dir():
        raise DeskPulseError(f"cannot write the labels to {target}: it is a folder")
    if not target.parent.is_dir():
        raise DeskPulseError(f"cannot write the labels to {target}: no folder "
                             f"{target.parent}")


def write_sheets(path: str | os.PathLike[str], labels: Sequence[Label]) -> list[Path]:
    """The labels as SVG pages at path (and beside it for more than one page), each file
    written whole or not at all. Returns the files written."""
    from deskpulse.device.image import write_image

    if not labels:
        return []
    pages = [labels[at:at + PER_PAGE] for at in range(0, len(labels), PER_PAGE)]
    targets = page_paths(path, len(pages))
    check_target(targets[0])
    for target, page in zip(targets, pages, strict=True):
        write_image(target, sheet_svg(page), private=False)
    return targets
