"""A fake OCI Object Storage service for tests: enough of the real API for the real `oci` client.

It answers ListObjects (`GET /n/{ns}/b/{bucket}/o`), HeadObject and GetObject (Range → 206 with
Content-Range, If-Match → 412) the way the service does: object names arrive URL-encoded (`%2F`),
errors are `{"code", "message"}` JSON with an `opc-request-id`, single-part objects carry
`content-md5` and multipart ones `opc-multipart-md5` (`base64(md5(part md5s))-N`). When given the
client's public key (and keyId) it also verifies the request signature (OCI's draft-cavage HTTP
signature), so a test proves the backend really signs with the user-principal key it was handed.

Faults are queued per method and object (`add_fault`): an HTTP error status (500, 429 with
Retry-After, ...), a connection reset mid-body, a truncated body, wrong bytes, or a stalled stream.
An object can be listed yet missing. `bytes_served` counts object bytes written to clients.
Binds 127.0.0.1 on a free port; `stop()` (or leaving the `with` block) ends stalls at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_LIST_FIELDS = {"size", "md5", "etag", "timeCreated", "timeModified", "storageTier", "archivalState"}


@dataclass
class FakeObject:
    data: bytes
    part_size: int | None = None  # None: uploaded in one part
    etag: str = field(default_factory=lambda: str(uuid.uuid4()))
    missing: bool = False  # listed, but GET/HEAD answer 404 (a listing racing a delete)
    list_md5: bool = True  # False: the listing omits md5, so a client must HEAD for it
    storage_tier: str = "Standard"

    @property
    def md5_header(self) -> tuple[str, str]:
        """('content-md5', b64) for one part, ('opc-multipart-md5', 'b64-N') for several."""
        if self.part_size is None:
            return "content-md5", base64.b64encode(hashlib.md5(self.data).digest()).decode()
        parts = [self.data[i : i + self.part_size] for i in range(0, len(self.data), self.part_size)] or [b""]
        combined = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).digest()
        return "opc-multipart-md5", f"{base64.b64encode(combined).decode()}-{len(parts)}"


@dataclass
class Fault:
    """One injected failure, used up after `times` matching requests.

    kind: "status" (answer `status`/`code`, with `retry_after` for 429), "reset" (send
    `after_bytes` of the body, then a TCP reset), "truncate" (then a clean close short of
    Content-Length), "corrupt" (every byte from `after_bytes` on is flipped) or "stall" (send
    `after_bytes`, then nothing for `stall_seconds`). method: "GET", "HEAD" or "LIST".
    name: the full object name, or None for any.
    """

    kind: str
    method: str = "GET"
    name: str | None = None
    times: int = 1
    status: int = 500
    code: str = "InternalServerError"
    retry_after: float | None = None
    after_bytes: int = 0
    stall_seconds: float = 30.0


class FaultQueue:
    """Faults waiting for a matching request (shared with the S3 fault proxy). Subclasses set
    `self.faults` and `self.lock` in their constructor."""

    faults: list[Fault]
    lock: threading.Lock

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, method: str, name: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.name in (None, name) and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None


class FakeOciServer(FaultQueue):
    """In-memory buckets of one namespace behind a threaded HTTP server on 127.0.0.1."""

    def __init__(
        self,
        *,
        namespace: str = "testns",
        public_key: rsa.RSAPublicKey | None = None,
        key_id: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.public_key = public_key  # set: requests must carry a valid signature by its private key
        self.key_id = key_id  # set: and name this "{tenancy}/{user}/{fingerprint}" as keyId
        self.buckets: dict[str, dict[str, FakeObject]] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, raw path)
        self.bytes_served = 0
        self.bytes_by_object: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    # --- setup ----------------------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> None:
        self.buckets.setdefault(bucket, {})

    def put_object(self, bucket: str, name: str, data: bytes, **options: Any) -> FakeObject:
        obj = FakeObject(data=data, **options)
        self.buckets.setdefault(bucket, {})[name] = obj
        return obj

    def count(self, name: str, sent: int) -> None:
        with self.lock:
            self.bytes_served += sent
            self.bytes_by_object[name] = self.bytes_by_object.get(name, 0) + sent

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeOciServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-oci", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


@contextmanager
def running_fake_oci(**kwargs: Any) -> Iterator[FakeOciServer]:
    server = FakeOciServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOciServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the real service; every answer has a length

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # --- routing --------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        with fake.lock:
            fake.requests.append((method, self.path))
        if fake.public_key is not None and not self._signature_ok(method):
            return self._error(
                401,
                "NotAuthenticated",
                "The required information to complete authentication was not provided or was incorrect.",
            )
        raw_path, _, query = self.path.partition("?")
        parts = raw_path.split("/", 6)  # ['', 'n', ns, 'b', bucket, 'o', name]
        if len(parts) < 6 or parts[1] != "n" or parts[3] != "b" or parts[5] != "o":
            return self._error(404, "NotFound", f"no route for {raw_path}")
        namespace, bucket = unquote(parts[2]), unquote(parts[4])
        if namespace != fake.namespace:
            return self._error(404, "NamespaceNotFound", f"namespace '{namespace}' not found")
        objects = fake.buckets.get(bucket)
        if objects is None:
            return self._error(
                404,
                "BucketNotFound",
                f"Either the bucket named '{bucket}' does not exist in the namespace '{namespace}' "
                "or you are not authorized to access it",
            )
        if len(parts) == 6 or parts[6] == "":
            return (
                self._list(objects, parse_qs(query))
                if method == "GET"
                else self._error(405, "MethodNotAllowed", "")
            )
        name = unquote(parts[6])
        fault = fake.take_fault(method, name)
        if fault is not None and fault.kind == "status":
            return self._error(fault.status, fault.code, "injected", retry_after=fault.retry_after)
        obj = objects.get(name)
        if obj is None or obj.missing:
            return self._error(
                404, "ObjectNotFound", f"The object '{name}' was not found in the bucket '{bucket}'"
            )
        return self._object(method, name, obj, fault)

    def _list(self, objects: dict[str, FakeObject], query: dict[str, list[str]]) -> None:
        fault = self.fake.take_fault("LIST", None)
        if fault is not None:
            return self._error(fault.status, fault.code, "injected", retry_after=fault.retry_after)
        prefix = query.get("prefix", [""])[0]
        start = query.get("start", [""])[0]
        limit = int(query.get("limit", ["1000"])[0])
        fields = set(query.get("fields", [""])[0].split(",")) & _LIST_FIELDS
        names = sorted(n for n in objects if n.startswith(prefix) and n >= start)
        page, rest = names[:limit], names[limit:]
        entries = []
        for name in page:
            obj = objects[name]
            values = {
                "size": len(obj.data),
                "md5": obj.md5_header[1] if obj.list_md5 else None,
                "etag": obj.etag,
                "timeCreated": "2026-11-22T10:00:00.000Z",
                "timeModified": "2026-11-22T10:00:00.000Z",
                "storageTier": obj.storage_tier,
                "archivalState": "Archived" if obj.storage_tier == "Archive" else None,
            }
            entries.append(
                {"name": name, **{k: v for k, v in values.items() if k in fields and v is not None}}
            )
        body: dict[str, Any] = {"objects": entries, "prefixes": []}
        if rest:
            body["nextStartWith"] = rest[0]
        self._json(200, body)

    def _object(self, method: str, name: str, obj: FakeObject, fault: Fault | None) -> None:
        size = len(obj.data)
        if_match = self.headers.get("if-match")
        if if_match is not None and if_match.strip('"') != obj.etag:
            return self._error(412, "IfMatchFailed", "The If-Match header does not match the object's ETag")
        start, end, status = 0, size, 200
        range_header = self.headers.get("range")
        if range_header and method == "GET":
            parsed = _parse_range(range_header, size)
            if parsed is None:
                return self._error(416, "InvalidRange", f"range '{range_header}' is not satisfiable")
            start, end = parsed
            status = 206
        md5_name, md5_value = obj.md5_header
        self.send_response(status)
        self.send_header("content-length", str(end - start if method == "GET" else size))
        self.send_header("content-type", "application/octet-stream")
        self.send_header("etag", obj.etag)
        self.send_header(md5_name, md5_value)
        self.send_header("last-modified", formatdate(1795341600, usegmt=True))
        self.send_header("accept-ranges", "bytes")
        self.send_header("opc-request-id", uuid.uuid4().hex)
        if status == 206:
            self.send_header("content-range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if method == "HEAD":
            return
        self._send_body(name, obj.data[start:end], fault)

    def _send_body(self, name: str, body: bytes, fault: Fault | None) -> None:
        cut = len(body) if fault is None else min(fault.after_bytes, len(body))
        if fault is not None and fault.kind == "corrupt":
            cut = len(body)
            body = body[: fault.after_bytes] + bytes(b ^ 0xFF for b in body[fault.after_bytes :])
        try:
            for offset in range(0, cut, 256 * 1024):
                piece = body[offset : min(cut, offset + 256 * 1024)]
                self.wfile.write(piece)
                self.fake.count(name, len(piece))
            self.wfile.flush()
            if fault is None or fault.kind == "corrupt":
                return
            if fault.kind == "stall":
                self.fake.stopping.wait(fault.stall_seconds)
            elif fault.kind == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
        self.connection.close()

    # --- answers --------------------------------------------------------------------------------

    def _json(self, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data) if self.command != "HEAD" else 0))
        self.send_header("opc-request-id", uuid.uuid4().hex)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, *, retry_after: float | None = None) -> None:
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
        self._json(status, {"code": code, "message": message}, headers=headers)

    def _signature_ok(self, method: str) -> bool:
        """Check OCI's draft-cavage signature over the headers the client says it signed."""
        fake_key = self.fake.public_key
        auth = self.headers.get("authorization", "")
        if fake_key is None or not auth.startswith("Signature "):
            return False
        params = dict(_split_param(p) for p in auth[len("Signature ") :].split(","))
        if self.fake.key_id is not None and params.get("keyId") != self.fake.key_id:
            return False
        lines = []
        for header in params.get("headers", "").split():
            if header == "(request-target)":
                lines.append(f"(request-target): {method.lower()} {self.path}")
            elif self.headers.get(header) is None:
                return False
            else:
                lines.append(f"{header}: {self.headers[header]}")
        try:
            fake_key.verify(
                base64.b64decode(params.get("signature", "")),
                "\n".join(lines).encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:
            return False
        return True


def _split_param(text: str) -> tuple[str, str]:
    key, _, value = text.strip().partition("=")
    return key, value.strip('"')


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-` or `bytes=-n` → [start, end); None when not satisfiable."""
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not dash or "," in spec:
        return None
    try:
        if first == "":
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = min(size, int(last) + 1) if last else size
    except ValueError:
        return None
    return (start, end) if start < end and start < size else None
