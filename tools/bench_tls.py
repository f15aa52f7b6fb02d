"""The kiosk's smallest heap with the WiFi push over HTTPS, beside plain HTTP, on the
32-bit MicroPython build (tools/bench_heap.py's meter, ESP32-sized objects).

Run from the repository root (about 15-30 min):
    .venv/bin/python tools/bench_tls.py [--sessions N] [--step KB] [--json]

/work/shared/micropython's build has no `tls` (its tarball lacks the mbedTLS submodule),
so this adds the mbedTLS source MicroPython pins (lib/mbedtls at the tarball's commit,
from the local mirrors of micropython and Mbed-TLS) and builds the same port twice with
MICROPY_PY_SSL=1:
  - c: mbedTLS allocating from the C heap (calloc), as the unix port does by default and
    as on the ESP32, whose mbedTLS is ESP-IDF's, configured by sdkconfig
    (CONFIG_MBEDTLS_DEFAULT_MEM_ALLOC), outside the Python heap. Its figure is the
    Python heap an ESP32 kiosk needs with TLS;
  - gc: mbedTLS allocating from the MicroPython GC heap, as the bare-metal ports (rp2,
    stm32) do (extmod/mbedtls/mbedtls_config_common.h, MICROPY_MBEDTLS_CONFIG_BARE_METAL:
    m_tracked_calloc). The difference between the two is what mbedTLS itself takes at
    its peak, which on an ESP32 comes out of ESP-IDF's heap, beside WiFi
    (docs/hardware.md, "TLS").
Cases, all `.mpy` with the push, serial syncs and NTP (tests/ntpserver.py: the clock an
https push waits for) but no config upload, 60 sessions by default: plain HTTP on the
stock 32-bit build (the anchor: test_heap32's mpy+push less the upload), plain HTTP and
HTTPS on each TLS build.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_heap  # noqa: E402

MIRRORS = Path("/work/.mirror")
MICROPYTHON_GIT = MIRRORS / "micropython+micropython" / "repo"
MBEDTLS_GIT = MIRRORS / "Mbed-TLS+mbedtls" / "repo"
ALLOCATORS = ("gc", "c")

# mbedTLS's config for the "gc" build: the unix port's (which leaves mbedTLS on the C
# library's calloc/free), with the GC-heap hooks the bare-metal ports use.
_GC_HEAP_CONFIG = """\
#include "mbedtls/mbedtls_config_port.h"
#include <stddef.h>
void *m_tracked_calloc(size_t nmemb, size_t size);
void m_tracked_free(void *ptr);
#define MBEDTLS_PLATFORM_MEMORY
#define MBEDTLS_PLATFORM_STD_CALLOC m_tracked_calloc
#define MBEDTLS_PLATFORM_STD_FREE m_tracked_free
"""


def _git(repo: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False,
                          timeout=300, **kwargs)  # type: ignore[call-overload]


def _add_mbedtls(src: Path) -> None:
    """lib/mbedtls (the library and headers only) at the commit MicroPython pins, and
    lib/mbedtls_errors, which the tarball leaves out too."""
    if (src / "lib" / "mbedtls" / "library" / "ssl_tls.c").is_file():
        return
    commit = next((p.name.removesuffix(".tar.gz").split("-", 1)[1] for p in
                   bench_heap.SHARED_MICROPYTHON.glob("micropython-*.tar.gz")), "")
    for repo in (MICROPYTHON_GIT, MBEDTLS_GIT):
        if not (repo / "HEAD").is_file():
            raise bench_heap.BuildError(f"no git mirror at {repo}: no mbedTLS source")
    pinned = _git(MICROPYTHON_GIT, "ls-tree", commit, "lib/mbedtls").stdout.split()
    if len(pinned) < 3:
        raise bench_heap.BuildError(f"MicroPython {commit!r} pins no lib/mbedtls")
    for repo, tree, paths, dest in (
            (MBEDTLS_GIT, pinned[2].decode(), ["library", "include", "LICENSE"],
             src / "lib" / "mbedtls"),
            (MICROPYTHON_GIT, commit, ["lib/mbedtls_errors"], src)):
        dest.mkdir(parents=True, exist_ok=True)
        archive = _git(repo, "archive", tree, *paths)
        if archive.returncode != 0:
            raise bench_heap.BuildError(f"git archive {tree} {paths}: {archive.stderr[-300:]!r}")
        subprocess.run(["tar", "x", "-C", str(dest)], input=archive.stdout, check=True)


def build_port32_tls(allocator: str, frozen_app: bool = False,
                     cache: Path = bench_heap.CACHE) -> Path:
    """The 32-bit port of bench_heap.build_port32(frozen_app) with `tls`, mbedTLS
    allocating from the GC heap ("gc") or the C heap ("c"). Raises bench_heap.BuildError
    when it cannot be built here."""
    # That build unpacks the source, builds mpy-cross and writes the frozen manifest.
    base = bench_heap.build_port32(frozen_app, cache).parents[4]
    src = base / "micropython"
    build = f"build-32tls-{allocator}"
    args = ["make", "-s", "-j2", "-C", str(src / "ports" / "unix"), "VARIANT=standard",
            f"BUILD={build}", "CC=gcc -m32", "LD=gcc -m32", "LDFLAGS_EXTRA=-m32",
            "MICROPY_PY_FFI=0", "MICROPY_PY_SSL=1", "MICROPY_SSL_MBEDTLS=1",
            "MICROPY_PY_BTREE=0", "MPY_CROSS_FLAGS=-march=x86",
            f"FROZEN_MANIFEST={base / 'manifest.py'}"]
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _add_mbedtls(src)
        if allocator == "gc":
            config = base / "mbedtls_gc_heap.h"
            config.write_text(_GC_HEAP_CONFIG)
            args += [f'MBEDTLS_CONFIG_FILE=\\"{config}\\"',
                     "CFLAGS_EXTRA=-DMICROPY_TRACKED_ALLOC=1"]  # m_tracked_calloc
        done = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise bench_heap.BuildError(f"the TLS build failed: {done.stderr[-1500:]}")
    return src / "ports" / "unix" / build / "micropython"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--step", type=int, default=4, help="resolution in KB (default 4)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", metavar="BUILD:CASE,...",
                        help="only these runs, e.g. tls-c-frozen:frozen+push+tls")
    args = parser.parse_args(argv)

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report("building the 32-bit ports (stock, and with tls: mbedTLS on the GC or C heap)")
    binaries = {"stock": bench_heap.build_port32(False),
                "stock-frozen": bench_heap.build_port32(True)}
    binaries.update({f"tls-{a}": build_port32_tls(a) for a in ALLOCATORS})
    binaries["tls-c-frozen"] = build_port32_tls("c", frozen_app=True)
    runs = [("stock", "mpy+push")] + [(f"tls-{a}", case) for a in ALLOCATORS
                                      for case in ("mpy+push", "mpy+push+tls")]
    runs += [("stock-frozen", "frozen+push"), ("tls-c-frozen", "frozen+push"),
             ("tls-c-frozen", "frozen+push+tls")]
    if args.only:
        runs = [run for run in runs if f"{run[0]}:{run[1]}" in args.only.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    rows = []
    for build, name in runs:
        case = bench_heap.prepare(name, "32", binaries[build], args.sessions)
        # No config upload: its own peak (about 32 KB) would hide the push's, and the
        # 7.7 KB config with a certificate is over the kiosk's 8 KB.
        case.upload = False
        case.local_ntp = True  # the clock an https push waits for, in every case alike
        low, high = (64, 192) if name.startswith("frozen") else (160, 384)
        figure = bench_heap.bisect(case, low * 1024, high * 1024, args.step * 1024, work,
                                   report)
        rows.append({"build": build, "case": name, "heap": figure.heap,
                     "failed_at": figure.failed_at, "app": figure.app})
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    anchor = rows[0]["heap"]  # each form against its stock plain-HTTP run
    anchors = {row["case"].split("+")[0]: row["heap"] for row in reversed(rows)
               if row["build"].startswith("stock")}
    print(f"Minimum heap, 32-bit, with the push, {args.sessions} sessions "
          f"({args.step} KB steps):")
    print("| build | form | push | -X heapsize= | vs stock plain HTTP | failed at |")
    print("|---|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['build']} | {row['case'].split('+')[0]} | "
              f"{'HTTPS' if row['case'].endswith('+tls') else 'HTTP'} | "
              f"{row['heap'] / 1024:.0f} KB | "
              f"{row['heap'] / anchors.get(row['case'].split('+')[0], anchor):.2f}x | "
              f"{row['failed_at'] / 1024:.0f} KB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
