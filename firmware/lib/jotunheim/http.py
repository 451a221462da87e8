"""A small HTTP/1.1 client on asyncio streams: one request per connection (GET, POST, PUT,
DELETE, HEAD, PATCH), the status, the headers and a body bounded in size; https where the
runtime has ssl. Loaded by Jormungandr (jotunheim.children) on first use only."""
# How this works: request() opens a connection (through ssl for https: CPython checks the
# server's certificate against the system's authorities; MicroPython has no store of
# authorities on a board, so there the link is encrypted but the server is not
# authenticated), sends the request with Connection: close, and reads the status line,
# at most MAX_HEADERS header lines of at most MAX_LINE bytes, then the body by
# Content-Length, chunked transfer coding, or until the server closes. A body longer than
# max_bytes stops the read with TooLarge (a MemoryError: the call fails
# RESOURCE_EXHAUSTED). The whole exchange is bounded by timeout_ms.
import asyncio
import json

METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH")
MAX_LINE = 1024
MAX_HEADERS = 32
MAX_BODY = 65536


class TooLarge(MemoryError):
    """A response larger than the caller allowed."""


def split_url(url):
    """(tls, host, port, path) of an http:// or https:// URL; ValueError if it is not."""
    if type(url) is not str:
        raise ValueError("the URL must be text")
    for scheme, tls, default in (("http://", False, 80), ("https://", True, 443)):
        if url.startswith(scheme):
            break
    else:
        raise ValueError("only http:// and https:// URLs are supported: %r" % url)
    rest = url[len(scheme):]
    slash = rest.find("/")
    where, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in where:
        raise ValueError("user:password@ in a URL is not supported: send an Authorization "
                         "header")
    host, number = where, default
    if where.startswith("["):  # [v6 address]:port
        end = where.find("]")
        host, tail = where[1:end], where[end + 1:]
        if tail:
            number = _port(tail[1:] if tail[0] == ":" else "x")
    elif ":" in where:
        host, text = where.rsplit(":", 1)
        number = _port(text)
    if not host or " " in host or " " in path:
        raise ValueError("bad URL %r" % url)
    return tls, host, number, path


def _port(text):
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise ValueError("bad port %r in the URL" % text)
    return number


def _body(body, headers):
    """The request body as bytes, with its Content-Type when the caller gave none."""
    if body is None:
        return b""
    if isinstance(body, (dict, list)):
        headers.setdefault("content-type", "application/json")
        return json.dumps(body).encode()
    if isinstance(body, str):
        headers.setdefault("content-type", "text/plain; charset=utf-8")
        return body.encode()
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    raise ValueError("a body is text, bytes, or a map or list (sent as JSON)")


async def request(method, url, body=None, headers=None, timeout_ms=10000, max_bytes=4096):
    """{"status", "reason", "headers" (names in lower case), "body" (bytes)}."""
    method = method.upper() if type(method) is str else method
    if method not in METHODS:
        raise ValueError("method must be one of %s" % ", ".join(METHODS))
    if not 0 <= max_bytes <= MAX_BODY:
        raise ValueError("max_bytes must be 0 to %d" % MAX_BODY)
    tls, host, number, path = split_url(url)
    sent = {}
    for name in headers or {}:
        value = headers[name]
        if type(name) is not str or type(value) is not str or "\n" in name + value or \
                "\r" in name + value or ":" in name:
            raise ValueError("header names and values are text on one line")
        sent[name.lower()] = value
    data = _body(body, sent)
    return await asyncio.wait_for(_exchange(method, tls, host, number, path, sent, data,
                                            max_bytes), timeout_ms / 1000)


async def _exchange(method, tls, host, number, path, sent, data, max_bytes):
    if tls:
        reader, writer = await asyncio.open_connection(host, number, ssl=_context())
    else:
        reader, writer = await asyncio.open_connection(host, number)
    try:
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, host if number in (80, 443)
                                                    else "%s:%d" % (host, number))
        sent.setdefault("user-agent", "jotunheim")
        sent["connection"] = "close"
        if data or method in ("POST", "PUT", "PATCH"):
            sent["content-length"] = str(len(data))
        for name in sent:
            head += "%s: %s\r\n" % (name, sent[name])
        writer.write((head + "\r\n").encode() + data)
        await writer.drain()
        return await _response(reader, method, max_bytes)
    finally:
        writer.close()


def _context():
    import ssl
    if hasattr(ssl, "create_default_context"):  # CPython: the system's authorities
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_NONE  # no authorities on the device (see the header)
    return context


async def _line(reader):
    line = await reader.readline()
    if len(line) > MAX_LINE:
        raise OSError("a header line is longer than %d bytes" % MAX_LINE)
    return line


async def _response(reader, method, max_bytes):
    status_line = await _line(reader)
    parts = status_line.decode().strip().split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise OSError("not an HTTP response: %r" % status_line[:40])
    status = int(parts[1])
    headers = {}
    while True:
        line = await _line(reader)
        if line in (b"\r\n", b"\n", b""):
            break
        if len(headers) >= MAX_HEADERS:
            raise OSError("more than %d header lines" % MAX_HEADERS)
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _chunked(reader, max_bytes)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > max_bytes:
            raise TooLarge("the response body has %d bytes, more than max_bytes (%d)"
                           % (length, max_bytes))
        body = await reader.readexactly(length) if length else b""
    else:
        body = await _until_closed(reader, max_bytes)
    return {"status": status, "reason": parts[2] if len(parts) > 2 else "",
            "headers": headers, "body": bytes(body)}


async def _chunked(reader, max_bytes):
    body = b""
    while True:
        size = int((await _line(reader)).split(b";")[0].strip(), 16)
        if size == 0:
            while (await _line(reader)) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return body
        if len(body) + size > max_bytes:
            raise TooLarge("the response body is more than max_bytes (%d)" % max_bytes)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def _until_closed(reader, max_bytes):
    body = b""
    while True:
        piece = await reader.read(512)
        if not piece:
            return body
        body += piece
        if len(body) > max_bytes:
            raise TooLarge("the response body is more than max_bytes (%d)" % max_bytes)
