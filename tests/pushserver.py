"""A small stand-in for `deskpulse serve` in the test process: it speaks docs/wifi.md,
verifies every request with host/deskpulse/signing.py, stores into real SQLite with
db.store_batch (so the serial sync can share the database), and can misbehave on demand:
forged or missing answer signatures, 5xx, 409, dropped connections, hanging or slow
answers. Every request is logged for the tests to inspect."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from deskpulse.protocol import signing
from deskpulse.protocol.batch import BatchError, decode_batch, parse_anchor
from deskpulse.store import open_store

# What the server does with a request; taken from the queue in order, then `default`.
OK = "ok"  # store, answer signed
FORGE = "forge"  # store, answer signed with another key
UNSIGNED = "unsigned"  # store, answer without a signature
DROP = "drop"  # store, then close the connection without answering
HANG = "hang"  # read the request, store nothing, answer nothing until released
SLOW = "slow"  # store, answer signed, one byte at a time
ERROR_500 = "500"
UNAVAILABLE_503 = "503"  # store nothing; answer 503 with Retry-After: retry_after (if set)
REPLAY_409 = "409"
TAMPER = "tamper"  # a config fetch: the body changed after it was signed


@dataclass
class Seen:
    """One request as the server saw it."""

    nonce: str
    behaviour: str
    code: int | None
    seqs: list[int] = field(default_factory=list)
    new: int = 0
    duplicates: int = 0
    at: float = field(default_factory=time.monotonic)


class PushServer:
    def __init__(self, db_path: Path, keys: dict[str, bytes],
                 tls: tuple[Path, Path] | None = None) -> None:
        """tls: (certfile, keyfile) to speak HTTPS with."""
        self.db_path = db_path
        self.keys = dict(keys)
        self.queue: deque[str] = deque()
        self.default = OK
        self.retry_after: deque[str | None] = deque()  # for each 503, in order
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends every HANG
        self.last_nonce: dict[str, signing.Nonce] = {}
        # Config over the air: the config (with its "version") each kiosk should run; the
        # push answer names the version, POST .../config serves it.
        self.configs: dict[str, dict[str, Any]] = {}
        # (certfile, keyfile) the handshakes present from the next push answer on: an
        # impostor taking over between a push and the config fetch it leads to.
        self.impostor_after_push: tuple[Path, Path] | None = None
        self.tls_context: ssl.SSLContext | None = None
        open_store(db_path).close()
        handler = type("Handler", (_Handler,), {"push": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.tls_context = context
            # The handshake runs in the handler's thread (at its first read), so a kiosk
            # that refuses the certificate costs that thread only.
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True,
                                                    do_handshake_on_connect=False)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> PushServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_behaviour(self) -> str:
        with self.lock:
            return self.queue.popleft() if self.queue else self.default

    def stored(self, device_id: str) -> list[int]:
        conn = open_store(self.db_path)
        try:
            return [r["seq"] for r in conn.responses_of(device_id)]
        finally:
            conn.close()

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.02)
        return False


class _Handler(BaseHTTPRequestHandler):
    push: PushServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, code: int, obj: dict[str, Any], key: bytes | None, nonce: str,
                slow: bool = False, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if key is not None:
            self.send_header("X-DeskPulse-Signature", signing.sign_answer(key, nonce, body))
        self.send_header("Connection", "close")
        self.end_headers()
        if slow:
            self.wfile.flush()
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(0.01)
        else:
            self.wfile.write(body)
        self.close_connection = True

    def _error(self, code: int, sentence: str, seen: Seen,
               headers: dict[str, str] | None = None) -> None:
        seen.code = code
        self._answer(code, {"error": sentence}, None, "", headers=headers)

    def do_POST(self) -> None:  # noqa: C901 - one request, read top to bottom
        push = self.push
        behaviour = push.next_behaviour()
        nonce = self.headers.get("X-DeskPulse-Nonce", "")
        seen = Seen(nonce, behaviour, None)
        with push.lock:
            push.seen.append(seen)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        parts = self.path.split("/")
        device_id = parts[3] if len(parts) == 5 else ""
        key = push.keys.get(device_id)
        if key is None:
            return self._error(404, "no such device", seen)
        fetch = parts[-1] == "config"
        if self.headers.get("Content-Type") != ("application/json" if fetch
                                                else signing.CONTENT_TYPE):
            return self._error(415, "wrong content type", seen)
        given = self.headers.get("X-DeskPulse-Signature", "")
        want = signing.sign_request(key, "POST", self.path, device_id, nonce, body)
        if not signing.signature_matches(want, given):
            return self._error(401, "signature does not match", seen)
        if behaviour == HANG:
            push.release.wait(60)
            self.close_connection = True
            return None
        if behaviour == ERROR_500:
            return self._error(500, "server trouble", seen)
        if behaviour == UNAVAILABLE_503:
            with push.lock:
                retry_after = push.retry_after.popleft() if push.retry_after else None
            return self._error(503, "the database is not available right now", seen,
                               None if retry_after is None else {"Retry-After": retry_after})
        parsed = signing.parse_nonce(nonce)
        with push.lock:
            if behaviour == REPLAY_409 or parsed <= push.last_nonce.get(device_id,
                                                                        signing.Nonce(0, 0)):
                return self._error(409, "nonce not higher than the last accepted", seen)
            push.last_nonce[device_id] = parsed
        if fetch:
            return self._config(device_id, key, nonce, behaviour, seen)
        line, _, payload = body.partition(b"\n")
        try:
            head = json.loads(line)
            batch = decode_batch(payload)
            anchors = [parse_anchor(a) for a in head["anchors"]]
        except (ValueError, KeyError, BatchError) as exc:
            return self._error(400, f"bad body: {exc}", seen)
        conn = open_store(push.db_path)
        try:
            new, dup = conn.store_batch(device_id, batch.responses, anchors,
                                      head["status"], "wifi")
        finally:
            conn.close()
        seen.seqs = [r.seq for r in batch.responses]
        seen.new, seen.duplicates = new, dup
        if behaviour == DROP:
            seen.code = 0
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return None
        acked = batch.responses[-1].seq if batch.responses else None
        answer = {"acked": acked, "new": new, "duplicates": dup, "time": int(time.time())}
        if device_id in push.configs:
            answer["config"] = push.configs[device_id]["version"]
        seen.code = 200
        with push.lock:
            impostor, push.impostor_after_push = push.impostor_after_push, None
        if impostor is not None and push.tls_context is not None:
            push.tls_context.load_cert_chain(*impostor)  # for every handshake from now on
        if behaviour == FORGE:
            return self._answer(200, answer, signing.new_key(), nonce)
        if behaviour == UNSIGNED:
            return self._answer(200, answer, None, nonce)
        return self._answer(200, answer, key, nonce, slow=behaviour == SLOW)

    def _config(self, device_id: str, key: bytes, nonce: str, behaviour: str,
                seen: Seen) -> None:
        config = self.push.configs.get(device_id)
        if config is None:
            return self._error(404, "no config for this kiosk", seen)
        body = json.dumps(config, separators=(",", ":")).encode()  # as deskpulse serve
        signature = signing.sign_config(signing.new_key() if behaviour == FORGE else key,
                                        nonce, body)
        if behaviour == TAMPER:
            body = body.replace(b"}", b', "scale": 3}', 1)
        seen.code = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if behaviour != UNSIGNED:
            self.send_header("X-DeskPulse-Signature", signature)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True
        return None
