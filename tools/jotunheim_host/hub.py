"""A hub: accepts devices that dial in (agent.mode "dial", the default) and keeps one
controller.Device per device id."""

import asyncio

from jotunheim_host.session import ControllerError, Session, key_bytes
from jotunheim_host.transport import serve_tcp


class Hub:
    """Accepts devices that dial in (agent.mode "dial"); one Device per device id.

    keys: {device id: key} for devices that authenticate (hex text or bytes)."""

    def __init__(self, host="127.0.0.1", port=0, keys=None, name="hub", **device_options):
        self.host = host
        self.port = port
        self.keys = {k: key_bytes(v) for k, v in (keys or {}).items()}
        self.name = name
        self.devices = {}
        self.refused = []       # (device id or address, reason) of failed handshakes
        self._options = device_options
        self._arrived = asyncio.Condition()
        self._server = None
        self._sessions = set()

    async def start(self):
        self._server = await serve_tcp(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        for device in self.devices.values():
            await device.close()
        for session in list(self._sessions):
            session.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, transport):
        label = transport.label
        # the key depends on who the device says it is: looked up after its Hello
        session = Session(transport, "hub-" + self.name, self.keys.get, name=self.name)
        self._sessions.add(session)
        try:
            await session.start()
        except ControllerError as e:
            self.refused.append((label, str(e)))
            self._sessions.discard(session)
            return
        device_id = session.hello["device_id"]
        device = self.devices.get(device_id)
        if device is None:
            from jotunheim_host.controller import Device  # controller imports this module
            device = self.devices[device_id] = Device(name=self.name, **self._options)
            device.key = self.keys.get(device_id)
        device.controller_id = session.controller_id
        device.attach(session)
        async with self._arrived:
            self._arrived.notify_all()
        await session.closed.wait()
        self._sessions.discard(session)

    async def device(self, device_id=None, timeout=30.0):
        """The Device with this id (any device if None), once it has connected."""
        async def present():
            async with self._arrived:
                while True:
                    for known_id, device in self.devices.items():
                        if device_id in (None, known_id) and device.connected:
                            return device
                    await self._arrived.wait()
        return await asyncio.wait_for(present(), timeout)
