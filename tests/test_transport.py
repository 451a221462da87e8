"""The host's TCP transport (jotunheim_host.transport) against plain sockets on loopback:
delivery to a subscriber, read(), the end of the stream, and waiting while a peer that
reads nothing lets the kernel's buffers fill."""
import asyncio
import socket

from jotunheim_host.transport import TcpTransport, open_transport, serve_tcp


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def listener(receive_buffer=None):
    server = socket.socket()
    if receive_buffer:  # before the connection: what an accepted socket starts with
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    return server, "tcp://127.0.0.1:%d" % server.getsockname()[1]


async def accepted(server):
    sock, _ = await asyncio.get_running_loop().sock_accept(server)
    sock.setblocking(False)
    return sock


async def connected():
    """(listening socket, the transport connected to it, the peer's accepted socket)."""
    server, url = listener()
    transport = await open_transport(url)
    return server, transport, await accepted(server)


def test_what_came_before_a_subscriber_goes_to_it_first_then_the_end_once():
    async def scenario():
        server, transport, peer = await connected()
        peer.sendall(b"early")
        await asyncio.sleep(0.05)
        got = []
        transport.subscribe(got.append)     # what waited is delivered at once
        assert got == [b"early"]
        peer.sendall(b"later")
        peer.close()
        for _ in range(100):
            if got and got[-1] == b"":
                break
            await asyncio.sleep(0.01)
        assert b"".join(got) == b"earlylater" and got[-1] == b"" and got.count(b"") == 1
        transport.close()
        server.close()
    run(scenario())


def test_read_returns_what_arrives_and_then_the_end_every_time():
    async def scenario():
        server, transport, peer = await connected()
        peer.sendall(b"one")
        assert await transport.read() == b"one"
        peer.close()
        assert await transport.read() == b""
        assert await transport.read() == b""           # the end stays the end
        try:
            await transport.write(b"x")
        except ConnectionError:
            pass
        else:
            raise AssertionError("a write after the end must fail")
        transport.close()
        server.close()
    run(scenario())


def test_writes_wait_while_the_peer_reads_nothing_and_all_arrive_in_order():
    async def scenario():
        server, url = listener(receive_buffer=8192)
        transport = await open_transport(url)
        transport.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        peer = await accepted(server)
        chunk = bytes(range(256)) * 64               # 16 KB
        chunks = 64                                  # 1 MB: far more than the buffers hold

        async def writer():
            for i in range(chunks):
                await transport.write(bytes([i]) + chunk)

        task = asyncio.ensure_future(writer())
        await asyncio.sleep(0.3)
        assert not task.done()                       # it waits for the peer
        loop = asyncio.get_running_loop()
        received = bytearray()
        while len(received) < chunks * (len(chunk) + 1):
            data = await loop.sock_recv(peer, 65536)
            assert data
            received += data
        await task
        for i in range(chunks):
            piece = received[i * (len(chunk) + 1):(i + 1) * (len(chunk) + 1)]
            assert piece[0] == i and piece[1:] == chunk
        transport.close()
        peer.close()
        server.close()
    run(scenario())


def test_a_server_hands_each_connection_over_as_a_labelled_transport():
    async def scenario():
        connections = asyncio.Queue()

        async def on_connection(transport):
            await connections.put(transport)
            transport.subscribe(lambda data: data and transport.transport.write(data.upper()))

        server = await serve_tcp(on_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = await open_transport("tcp://127.0.0.1:%d" % port)
        accepted_transport = await connections.get()
        assert isinstance(accepted_transport, TcpTransport)
        assert accepted_transport.label.startswith("tcp://127.0.0.1:")
        await client.write(b"shout")
        assert await client.read() == b"SHOUT"
        client.close()
        server.close()
        await server.wait_closed()
    run(scenario())
