"""The provisioning token a phone carries to a device: QR text and an NFC NDEF record.

    encode_token(fields) -> "JOT:..."        decode_token(text) -> fields
    ndef_message(fields) -> bytes             parse_ndef(data) -> fields

fields: controller ("host:port"), anchor_sha256 (32 bytes), optional wifi_ssid, device_id,
wifi_password. Bad input raises ValueError with the reason.
"""
# The token holds no secret by default: it is shown on screens, printed and carried around.
# It says where the controller is and which trust anchor to believe (the SHA-256 of the
# hub's or signing key's public key), enough for a device to reach its controller and check
# it before it is given any key. Its binary form (big-endian):
#   version u8 (1) | anchor SHA-256 (32) | controller port u16 | host length u8 | host
#   | optional fields: tag u8, length u8, UTF-8 text (1 wifi ssid, 2 device id,
#     3 wifi password) | CRC-32 of everything before it (u32)
# As QR text it is "JOT:" + unpadded base32: only A-Z, 2-7 and ':', QR's dense alphanumeric
# mode (5.5 bits a character, against 8 for base64's mixed case). The CRC catches a token
# that was mistyped or cut short; QR and NFC have their own error correction. An unknown
# tag is refused: a new field is a new version.
import base64
import binascii
import struct

from jotunheim_host import bundle

TOKEN_PREFIX = "JOT:"
TOKEN_VERSION = 1
NDEF_TYPE = b"jotunheim.dev:prov"  # an NFC Forum external type (TNF 4): domain:type
_OPTIONAL = ((1, "wifi_ssid", "wifi.ssid"), (2, "device_id", "device.id"),
             (3, "wifi_password", "wifi.password"))
_SMALLEST = 1 + 32 + 2 + 1 + 1 + 4  # a one-letter host, no optional field
_MB, _ME, _CF, _SR, _IL, _TNF_EXTERNAL = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04
def token_bytes(fields):
    """The binary token: fields {controller, anchor_sha256 (32 bytes), optional wifi_ssid,
    device_id, wifi_password, version (1)}. ValueError for a field that does not fit."""
    known = {"version", "controller", "anchor_sha256"} | {name for _, name, _ in _OPTIONAL}
    if set(fields) - known:
        raise ValueError("unknown field %s" % ", ".join(sorted(set(fields) - known)))
    if fields.get("version", TOKEN_VERSION) != TOKEN_VERSION:
        raise ValueError("version %r cannot be written (only %d)" % (fields["version"],
                                                                      TOKEN_VERSION))
    _check_fields(fields)
    host, _, port = fields["controller"].rpartition(":")
    out = bytearray([TOKEN_VERSION]) + fields["anchor_sha256"]
    out += struct.pack(">HB", int(port), len(host)) + host.encode()
    for tag, name, _ in _OPTIONAL:
        if fields.get(name):
            value = fields[name].encode()
            if len(value) > 255:
                raise ValueError("%s is longer than 255 bytes" % name)
            out += bytes([tag, len(value)]) + value
    return bytes(out + struct.pack(">I", binascii.crc32(out)))


def parse_token_bytes(data):
    """The fields of a binary token; ValueError saying why it is not one."""
    if not data:
        raise ValueError("truncated: the token is empty")
    if data[0] != TOKEN_VERSION:
        raise ValueError("version %d is not supported (this reads version %d)"
                         % (data[0], TOKEN_VERSION))
    if len(data) < _SMALLEST:
        raise ValueError("truncated: %d bytes, a token has at least %d" % (len(data), _SMALLEST))
    body = data[:-4]
    if struct.pack(">I", binascii.crc32(body)) != data[-4:]:
        raise ValueError("checksum mismatch: the token is damaged or incomplete")
    port, size = struct.unpack_from(">HB", body, 33)
    at = 36 + size
    if at > len(body):
        raise ValueError("truncated: the controller's host runs past the end")
    fields = {"version": TOKEN_VERSION, "anchor_sha256": bytes(body[1:33]),
              "controller": "%s:%d" % (_text(body[36:at], "controller"), port)}
    names = {tag: name for tag, name, _ in _OPTIONAL}
    while at < len(body):
        if at + 2 > len(body):
            raise ValueError("truncated: a field header runs past the end")
        tag, size = body[at], body[at + 1]
        if tag not in names:
            raise ValueError("unknown field tag %d (a newer token version?)" % tag)
        if names[tag] in fields:
            raise ValueError("field %s given twice" % names[tag])
        if at + 2 + size > len(body):
            raise ValueError("truncated: field %s runs past the end" % names[tag])
        fields[names[tag]] = _text(body[at + 2:at + 2 + size], names[tag])
        at += 2 + size
    _check_fields(fields)
    return fields


def encode_token(fields):
    """The token as QR-friendly text: "JOT:" and base32 (A-Z, 2-7) without padding."""
    return TOKEN_PREFIX + base64.b32encode(token_bytes(fields)).decode().rstrip("=")


def decode_token(text):
    """The fields of a token's text (any case, surrounding blanks ignored); ValueError
    saying why it is not one: prefix, base32, version, truncation, checksum, a field."""
    text = text.strip().upper()
    if not text.startswith(TOKEN_PREFIX):
        raise ValueError("not a Jotunheim provisioning token: it does not start with %r"
                         % TOKEN_PREFIX)
    body = text[len(TOKEN_PREFIX):]
    try:
        data = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("not base32 after %r (letters A-Z and digits 2-7), or cut at an "
                         "impossible length" % TOKEN_PREFIX) from None
    return parse_token_bytes(data)


def ndef_message(fields):
    """An NDEF message of one external-type record (TNF 4, NDEF_TYPE) holding the token."""
    payload = token_bytes(fields)
    short = len(payload) < 256
    header = _MB | _ME | _TNF_EXTERNAL | (_SR if short else 0)
    length = bytes([len(payload)]) if short else struct.pack(">I", len(payload))
    return bytes([header, len(NDEF_TYPE)]) + length + NDEF_TYPE + payload


def parse_ndef(data):
    """The token fields of the first NDEF_TYPE record in an NDEF message; ValueError."""
    at = 0
    while at < len(data):
        header, type_length = _take(data, at, 2)
        at += 2
        if header & _CF:
            raise ValueError("chunked NDEF records are not supported")
        size = 1 if header & _SR else 4
        payload_length = int.from_bytes(_take(data, at, size), "big")
        at += size
        id_length = _take(data, at, 1)[0] if header & _IL else 0
        at += 1 if header & _IL else 0
        record_type = _take(data, at, type_length)
        at += type_length + id_length
        payload = _take(data, at, payload_length)
        at += payload_length
        # external type names compare without regard to case (NFC Forum RTD)
        if header & 7 == _TNF_EXTERNAL and record_type.lower() == NDEF_TYPE:
            return parse_token_bytes(payload)
        if header & _ME:
            break
    raise ValueError("no %s record in the NDEF message" % NDEF_TYPE.decode())


def _take(data, at, count):
    if at + count > len(data):
        raise ValueError("truncated NDEF message")
    return data[at:at + count]


def _text(raw, name):
    try:
        return bytes(raw).decode()
    except UnicodeError:
        raise ValueError("%s is not UTF-8 text" % name) from None


def _check_fields(fields):
    """The values must be ones the device takes: checked by its own settings rules."""
    if not fields.get("controller"):
        raise ValueError("controller is missing: a token says where the controller is")
    anchor = fields.get("anchor_sha256")
    if not isinstance(anchor, bytes) or len(anchor) != 32:
        raise ValueError("anchor_sha256 must be the 32 bytes of a SHA-256 digest")
    values = {"agent.controller": fields["controller"]}
    for _, name, key in _OPTIONAL:
        if name in fields:
            values[key] = fields[name]
    try:
        _settings().check(values, {})
    except ValueError as e:  # ConfigError: "settings: key: why", secrets never shown
        raise ValueError(str(e).replace("settings: ", "", 1)) from None


def _settings():
    return bundle._device_module("jotunheim.settings")
