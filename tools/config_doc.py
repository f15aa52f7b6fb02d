"""Write docs/config.md from the firmware's config validator (deskpulse.device.config_doc).

Run from the repository root after changing firmware/kiosk/config.py's keys or limits:
    .venv/bin/python tools/config_doc.py           # rewrite docs/config.md
    .venv/bin/python tools/config_doc.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deskpulse.device.config_doc import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only say whether docs/config.md is up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is out of date: run tools/config_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
