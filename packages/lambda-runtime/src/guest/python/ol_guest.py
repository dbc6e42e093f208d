"""The Python guest runtime of the OpenLambda TypeScript worker.

It runs inside a sandbox as ``python3 -S /packages/ol-runtime/ol_guest.py``, loads the lambda
from /handler and serves HTTP/1.1 (keep-alive) on /host/ol.sock. Standard library only.

Entry points, as OpenLambda defines them:
- ``OL_ENTRY_FILE`` (default ``f.py``) is the module imported from /handler;
- ``OL_WSGI_ENTRY`` / ``OL_ASGI_ENTRY`` name the module's WSGI / ASGI app;
- otherwise ``f(event)`` (JSON in, ``json.dumps`` of the result out), else ``app`` (ASGI when
  its call is a coroutine function, WSGI otherwise).

The worker sends the request path *after* ``/run/NAME``; NAME comes from the ``x-ol-lambda``
header or ``OL_LAMBDA_NAME``. WSGI gets ``SCRIPT_NAME=/run/NAME``, ASGI ``root_path``.

Packages: ``OL_PACKAGES`` lists directories (colon-separated) added with ``site.addsitedir``;
nothing else (no site-packages, no dist-packages) is on ``sys.path``.
"""

import io
import json
import os
import re
import socket
import sys
import threading
import traceback

SOCKET_PATH = os.environ.get("OL_GUEST_SOCKET", "/host/ol.sock")
HANDLER_DIR = os.environ.get("OL_HANDLER_DIR", "/handler")
MAX_HEADER = 64 * 1024

REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
    418: "I'm a teapot", 500: "Internal Server Error", 502: "Bad Gateway",
}


class BadRequest(Exception):
    pass


# What HTTP/1.1 lets a status line and a header carry (RFC 9110 section 5, RFC 9112 section 4).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_NOT_FIELD_CHAR = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
_STATUS = re.compile(r"([0-9]{3})(?: [\t\x20-\x7e\x80-\xff]*)?\Z")
_CHAR_NAMES = {0x0D: " (CR)", 0x0A: " (LF)", 0x00: " (NUL)"}
# Headers about the guest's own connection to the worker: write_response frames the answer.
_CONNECTION_HEADERS = frozenset(
    ("content-length", "connection", "transfer-encoding", "keep-alive", "proxy-connection",
     "upgrade", "trailer", "te")
)


# --- setup --------------------------------------------------------------------------------


def setup_paths(packages=None):
    """sys.path: /handler first, the standard library, then the lambda's packages."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and p != here and "-packages" not in p]
    if HANDLER_DIR not in sys.path:
        sys.path.insert(0, HANDLER_DIR)
    add_packages(packages if packages is not None else os.environ.get("OL_PACKAGES", ""))


def add_packages(spec):
    dirs = [d for d in spec.split(":") if d]
    if not dirs:
        return
    import site

    for d in dirs:
        if d not in sys.path:
            site.addsitedir(d)


def load_dotenv(path):
    """OpenLambda loads /handler/.env: KEY=VALUE lines, # comments, optional quotes."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[7:]
        key, value = line.split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        os.environ.setdefault(key, value)


def is_coroutine_function(obj):
    target = obj
    if not hasattr(target, "__code__") and not hasattr(target, "__func__"):
        target = getattr(type(obj), "__call__", None)
    target = getattr(target, "__func__", target)
    code = getattr(target, "__code__", None)
    if code is not None and code.co_flags & 0x80:  # CO_COROUTINE
        return True
    if getattr(target, "_is_coroutine", None) is not None:
        return True
    return False


class Entry:
    """The loaded lambda: kind is "func", "wsgi", "asgi" or "error"."""

    def __init__(self, kind, target=None, error=None):
        self.kind = kind
        self.target = target
        self.error = error


def load_entry():
    load_dotenv(os.path.join(HANDLER_DIR, ".env"))
    entry_file = os.environ.get("OL_ENTRY_FILE", "f.py")
    try:
        if not entry_file.endswith(".py"):
            raise ValueError("OL_ENTRY_FILE must end with .py, got: %s" % entry_file)
        module_name = entry_file[:-3].replace("/", ".")
        import importlib

        module = importlib.import_module(module_name)
        wsgi = os.environ.get("OL_WSGI_ENTRY")
        asgi = os.environ.get("OL_ASGI_ENTRY")
        if wsgi:
            return Entry("wsgi", getattr(module, wsgi))
        if asgi:
            return Entry("asgi", getattr(module, asgi))
        if hasattr(module, "f"):
            return Entry("func", module.f)
        if hasattr(module, "app"):
            app = module.app
            return Entry("asgi" if is_coroutine_function(app) else "wsgi", app)
        raise ValueError("No entry point found. Define 'f' or 'app' in %s." % entry_file)
    except BaseException:  # noqa: BLE001 - a lambda that cannot load answers 500 with why
        text = "loading %s failed:\n%s" % (entry_file, traceback.format_exc())
        sys.stderr.write("ol_guest: " + text)
        return Entry("error", error=text)


# --- HTTP/1.1 -------------------------------------------------------------------------------


class Request:
    __slots__ = ("method", "target", "version", "headers", "body", "keep_alive")


def read_request(rfile):
    """Parses one request from a buffered reader; None at a clean end of the connection."""
    line = rfile.readline(MAX_HEADER)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(MAX_HEADER)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise BadRequest("bad request line")
    req = Request()
    req.method, req.target, req.version = parts
    headers = []
    size = 0
    while True:
        h = rfile.readline(MAX_HEADER)
        size += len(h)
        if size > MAX_HEADER:
            raise BadRequest("headers too large")
        if h in (b"\r\n", b"\n", b""):
            break
        name, sep, value = h.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest("bad header line")
        headers.append((name.strip().lower(), value.strip()))
    req.headers = headers
    hmap = {}
    for k, v in headers:
        hmap[k] = v
    te = hmap.get("transfer-encoding", "").lower()
    if "chunked" in te:
        chunks = []
        while True:
            size_line = rfile.readline(MAX_HEADER)
            if not size_line:
                raise BadRequest("truncated chunked body")
            n = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if n == 0:
                while rfile.readline(MAX_HEADER) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(rfile.read(n))
            rfile.readline(MAX_HEADER)
        req.body = b"".join(chunks)
    else:
        length = int(hmap.get("content-length", "0") or "0")
        req.body = rfile.read(length) if length > 0 else b""
        if len(req.body) != length:
            raise BadRequest("truncated body")
    conn = hmap.get("connection", "").lower()
    req.keep_alive = req.version == "HTTP/1.1" and "close" not in conn or "keep-alive" in conn
    return req


def header(req, name, default=None):
    for k, v in req.headers:
        if k == name:
            return v
    return default


def _short(text):
    """A name or status for a message: quoted, escaped, cut at 64 chars (it may be hostile)."""
    text = str(text)
    return json.dumps(text[:64] + ("..." if len(text) > 64 else ""))


def answer_problem(status, headers):
    """What HTTP cannot carry in a lambda's status or headers, or None when it can all be sent.

    A value with CR or LF would split the answer into headers the lambda did not declare.
    """
    if isinstance(status, bool):
        return "a status of type bool"
    if isinstance(status, int):
        code = status
    elif isinstance(status, str):
        match = _STATUS.match(status)
        if match is None:
            return "a status line that is not 'NNN reason': %s" % _short(status)
        code = int(match.group(1))
    else:
        return "a status of type %s" % type(status).__name__
    if not 200 <= code <= 599:
        return "status %d; a final HTTP status is an integer from 200 to 599" % code
    try:
        pairs = list(headers)
    except TypeError:
        return "headers that are not a list of (name, value) pairs"
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            return "a header that is not a (name, value) pair"
        name, value = pair
        if not isinstance(name, str) or _TOKEN.match(name) is None:
            return "a header name that is not an HTTP token: %s" % _short(name)
        if not isinstance(value, str):
            return "header %s whose value is a %s, not a str" % (_short(name), type(value).__name__)
        bad = _NOT_FIELD_CHAR.search(value)
        if bad is not None:
            char = ord(bad.group(0))
            return "header %s whose value holds the character U+%04X%s at offset %d" % (
                _short(name), char, _CHAR_NAMES.get(char, ""), bad.start())
        if value != value.strip(" \t"):
            return "header %s whose value starts or ends with whitespace" % _short(name)
    return None


def refused_answer(problem):
    """The guest's own 500 for a lambda's answer that HTTP cannot carry."""
    text = ("OL_LAMBDA_BAD_RESPONSE: the lambda answered with %s; the guest answered 500 "
            "instead of sending it\n" % problem)
    return 500, [("Content-Type", "text/plain")], text.encode()


def write_response(wfile, status, headers, body, keep_alive):
    """status: an int or a "418 I'm a teapot" string; headers: (name, value) pairs."""
    if isinstance(status, int):
        status = "%d %s" % (status, REASONS.get(status, "Status"))
    out = ["HTTP/1.1 %s\r\n" % status]
    for name, value in headers:
        if name.lower() in _CONNECTION_HEADERS:
            continue
        out.append("%s: %s\r\n" % (name, value))
    out.append("Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        out.append("Connection: close\r\n")
    out.append("\r\n")
    wfile.write("".join(out).encode("latin-1") + body)
    wfile.flush()


def lambda_name(req):
    return header(req, "x-ol-lambda") or os.environ.get("OL_LAMBDA_NAME", "lambda")


def split_target(target):
    path, _, query = target.partition("?")
    if path.startswith("http://") or path.startswith("https://"):
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    return path or "/", query


# --- the three entry kinds ------------------------------------------------------------------


def run_func(entry, req):
    try:
        raw = req.body
        event = json.loads(raw) if raw.strip() else {}
    except ValueError as e:
        return 400, [("Content-Type", "text/plain")], ("bad POST data: %s" % e).encode()
    try:
        result = entry.target(event)
        body = json.dumps(result).encode()
    except Exception:  # noqa: BLE001
        return 500, [("Content-Type", "text/plain")], traceback.format_exc().encode()
    return 200, [("Content-Type", "application/json")], body


def run_wsgi(entry, req):
    from urllib.parse import unquote

    path, query = split_target(req.target)
    host = header(req, "host", "localhost")
    server_name, _, server_port = host.partition(":")
    environ = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "/run/" + lambda_name(req),
        "PATH_INFO": unquote(path, "latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port or "80",
        "SERVER_PROTOCOL": req.version,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(req.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for k, v in req.headers:
        key = k.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = v
        elif "HTTP_" + key in environ:
            environ["HTTP_" + key] += "," + v
        else:
            environ["HTTP_" + key] = v
    environ.setdefault("CONTENT_LENGTH", str(len(req.body)))
    started = []
    written = []

    def start_response(status, response_headers, exc_info=None):
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [(status, list(response_headers))]
        return written.append

    try:
        result = entry.target(environ, start_response)
        try:
            for chunk in result:
                if chunk:
                    written.append(chunk)
        finally:
            if hasattr(result, "close"):
                result.close()
        if not started:
            raise RuntimeError("the WSGI app returned without calling start_response")
    except Exception:  # noqa: BLE001
        return 500, [("Content-Type", "text/plain")], traceback.format_exc().encode()
    status, headers = started[0]
    return status, headers, b"".join(written)


_loop = None


def run_asgi(entry, req):
    import asyncio
    from urllib.parse import unquote

    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    path, query = split_target(req.target)
    root = "/run/" + lambda_name(req)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": req.version.split("/", 1)[-1],
        "method": req.method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": root,
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req.headers],
        "client": ("127.0.0.1", 0),
        "server": ("localhost", 80),
        "state": {},
    }
    sent = {"body": False}
    response = {"status": None, "headers": [], "body": []}

    async def receive():
        if not sent["body"]:
            sent["body"] = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            response["status"] = int(message["status"])
            response["headers"] = [
                (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                for k, v in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body":
            response["body"].append(bytes(message.get("body", b"")))

    try:
        _loop.run_until_complete(entry.target(scope, receive, send))
    except Exception:  # noqa: BLE001
        if response["status"] is None:
            return 500, [("Content-Type", "text/plain")], traceback.format_exc().encode()
    if response["status"] is None:
        return 500, [("Content-Type", "text/plain")], b"the ASGI app sent no response"
    return response["status"], response["headers"], b"".join(response["body"])


def dispatch(entry, req):
    if entry.kind == "func":
        return run_func(entry, req)
    if entry.kind == "wsgi":
        return run_wsgi(entry, req)
    if entry.kind == "asgi":
        return run_asgi(entry, req)
    return 500, [("Content-Type", "text/plain")], entry.error.encode()


# --- the server -----------------------------------------------------------------------------

_call_lock = threading.Lock()


def serve_connection(conn, entry):
    rfile = conn.makefile("rb", buffering=65536)
    wfile = conn.makefile("wb", buffering=65536)
    try:
        while True:
            try:
                req = read_request(rfile)
            except (BadRequest, ValueError) as e:
                write_response(wfile, 400, [("Content-Type", "text/plain")], str(e).encode(), False)
                return
            if req is None:
                return
            with _call_lock:
                status, headers, body = dispatch(entry, req)
            problem = answer_problem(status, headers)
            if problem is not None:
                status, headers, body = refused_answer(problem)
            if req.method == "HEAD":
                body = b""
            write_response(wfile, status, headers, body, req.keep_alive)
            if not req.keep_alive:
                return
    except (ConnectionError, BrokenPipeError, OSError):
        return
    finally:
        for f in (rfile, wfile):
            try:
                f.close()
            except OSError:
                pass
        conn.close()


def listen(path=SOCKET_PATH):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(64)
    return sock


def serve(sock, entry):
    """One thread per connection (the worker keeps one alive); calls run one at a time."""
    while True:
        conn, _ = sock.accept()
        t = threading.Thread(target=serve_connection, args=(conn, entry), daemon=True)
        t.start()


def main():
    sys.dont_write_bytecode = True
    setup_paths()
    entry = load_entry()
    sock = listen()
    serve(sock, entry)


if __name__ == "__main__":
    main()
