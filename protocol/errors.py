# The protocol layer's errors, split by blame: ProtocolError means the peer (or a file)
# sent bytes that are not a valid message; misuse of the API raises TypeError/ValueError.


class ProtocolError(Exception):
    """Malformed, oversized or otherwise invalid input from a peer."""


class UnknownMessageType(ProtocolError):
    """A well-formed frame whose type this side does not know; answer UNIMPLEMENTED."""

    def __init__(self, type_id):
        super().__init__("unknown message type %d" % type_id)
        self.type_id = type_id
