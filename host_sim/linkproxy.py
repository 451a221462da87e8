# A loopback TCP relay standing in for a simulated device's radio link (host only).
#
# The device connects to the proxy's port instead of its peer's; the proxy connects on to
# the peer and relays both ways. A test cuts the link (every connection is reset and new
# ones are reset as soon as they arrive, until restore()), adds latency (each chunk is
# held back that long in each direction), or drops the current connections once. One
# thread runs a selector over every socket; bytes wait in per-direction queues stamped
# with the time they may leave.
import collections
import selectors
import socket
import struct
import threading
import time


def _reset(sock):
    """Close with RST, as a link that vanished looks to the far end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Pipe:
    """One relayed connection: the device side, the peer side, bytes in flight."""

    def __init__(self, device, peer):
        self.device = device
        self.peer = peer
        self.queues = {device: collections.deque(), peer: collections.deque()}  # to send

    def other(self, sock):
        return self.peer if sock is self.device else self.device


class LinkProxy:
    """Relay 127.0.0.1:port to target_port; cut(), restore(), latency, drop()."""

    def __init__(self, target_port, target_host="127.0.0.1", port=0):
        self.target = (target_host, target_port)
        self.latency = 0.0       # seconds added in each direction
        self.connections = 0     # accepted since start, cut ones included
        self._cut = False
        self._pipes = {}         # socket -> _Pipe, for both of its sockets
        self._requests = collections.deque()  # drop() calls waiting for the thread
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="link-proxy", daemon=True)
        self._thread.start()

    @property
    def is_cut(self):
        return self._cut

    @property
    def open_connections(self):
        with self._lock:
            return len({id(pipe) for pipe in self._pipes.values()})

    def cut(self):
        """Link down: reset every connection, and reset new ones until restore()."""
        self._cut = True
        self.drop()

    def restore(self):
        """Link up again: new connections are relayed."""
        self._cut = False

    def drop(self):
        """Reset the connections open now (the link stays up); returns once they are."""
        if not self._running:
            return
        done = threading.Event()
        self._requests.append(done)
        self._wake_w.send(b"x")
        done.wait(5)

    def close(self):
        if self._running:
            self._running = False
            self._wake_w.send(b"x")
            self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _loop(self):
        while self._running:
            for key, events in self._selector.select(self._next_due()):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is self._wake_r:
                    self._woken()
                elif events & selectors.EVENT_READ:
                    self._receive(sock)
            self._send_due()
        self._close_all()

    def _woken(self):
        self._wake_r.recv(4096)
        while self._requests:  # drop() calls
            for pipe in set(self._pipes.values()):
                self._end(pipe)
            self._requests.popleft().set()

    def _accept(self):
        try:
            device, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.connections += 1
        if self._cut:
            _reset(device)
            return
        try:
            peer = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(device)
            return
        pipe = _Pipe(device, peer)
        for sock in (device, peer):
            sock.setblocking(False)
            with self._lock:
                self._pipes[sock] = pipe
            self._selector.register(sock, selectors.EVENT_READ)

    def _receive(self, sock):
        pipe = self._pipes.get(sock)
        if pipe is None:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._end(pipe, graceful=True)
            return
        pipe.queues[pipe.other(sock)].append((time.monotonic() + self.latency, data))

    def _send_due(self):
        now = time.monotonic()
        for sock, pipe in list(self._pipes.items()):
            queue = pipe.queues[sock]
            while queue and queue[0][0] <= now and sock in self._pipes:
                due, data = queue.popleft()
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._end(pipe)
                    break
                if sent < len(data):
                    queue.appendleft((due, data[sent:]))
                    break

    def _next_due(self):
        dues = [queue[0][0] for pipe in set(self._pipes.values())
                for queue in pipe.queues.values() if queue]
        if not dues:
            return None
        return max(0.001, min(dues) - time.monotonic())  # 0.001: a full socket waits

    def _end(self, pipe, graceful=False):
        """Close both sides: FIN when one side closed (after what is queued), else RST."""
        for sock in (pipe.device, pipe.peer):
            with self._lock:
                if self._pipes.pop(sock, None) is None:
                    continue
            self._selector.unregister(sock)
            if graceful:
                sock.settimeout(1.0)  # a peer that does not read loses the rest
                for due, data in pipe.queues[sock]:
                    try:
                        sock.sendall(data)
                    except OSError:
                        break
                sock.close()
            else:
                _reset(sock)

    def _close_all(self):
        for pipe in set(self._pipes.values()):
            self._end(pipe)
        while self._requests:
            self._requests.popleft().set()
        self._selector.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
