"""Provisioning: the token codec (QR text, NDEF checked with ndeflib), the key store, and the
provision verb against a simulated ESP32 (MicroPython runtime) through the real mpremote."""
import argparse
import asyncio
import base64
import binascii
import hashlib
import json
import stat
import struct
import sys

import ndef
import pytest
import segno

from agent_support import KEY, console_lines, free_port, listening, run
from jotunheim_host.controller import Hub, connect
from jotunheim_host.deploy import deploy
from jotunheim_host.errors import CommandError
from jotunheim_host.provision import (NDEF_TYPE, decode_token, do_provision, encode_token,
                                      load_keys, ndef_message, parse_ndef, provision_arguments,
                                      save_keys, token_bytes)

ANCHOR = hashlib.sha256(b"the hub's public key").digest()
TYPICAL = {"controller": "hub.local:7480", "anchor_sha256": ANCHOR, "wifi_ssid": "garden"}
WIFI_PASSWORD = "correct horse battery staple"
GARDEN = {"access_points": [{"ssid": "garden", "password": WIFI_PASSWORD, "rssi": -50}],
          "associate_ms": 200}

# Golden vectors: (fields, token text). A phone app is written against these.
VECTORS = [
    (TYPICAL, "JOT:AFDXTOQFKWDE3PM67GRNALF4CRYQKVBFT3KYFNVQCEVYE3QMLPTSCHJYBFUHKYRONRXWGYLMAE"
              "DGOYLSMRSW5I4W7MAQ"),
    ({"controller": "10.0.0.2:1", "anchor_sha256": bytes(32), "device_id": "greenhouse-1"},
     "JOT:AEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABBAYTALRQFYYC4MQCBRTXEZLFNZU"
     "G65LTMUWTDLEOFREQ"),
]


def sealed(body):
    """Token text for a binary body given its correct CRC-32: reaches the field checks."""
    data = bytes(body) + struct.pack(">I", binascii.crc32(bytes(body)))
    return "JOT:" + base64.b32encode(data).decode().rstrip("=")


def head(host=b"hub", port=7480):
    return bytes([1]) + ANCHOR + struct.pack(">HB", port, len(host)) + host


# ------------------------------------------------------------------ the token


@pytest.mark.parametrize("fields, text", VECTORS)
def test_golden_vectors(fields, text):
    assert encode_token(fields) == text
    assert decode_token(text) == dict(fields, version=1)
    assert decode_token(" " + text.lower() + "\n") == dict(fields, version=1)  # typed by hand


@pytest.mark.parametrize("fields", [
    TYPICAL,
    {"controller": "h:65535", "anchor_sha256": b"\xff" * 32},
    {"controller": "192.168.1.20:7480", "anchor_sha256": ANCHOR, "wifi_ssid": "Café ☕",
     "device_id": "esp32-a4cf12b3c4d5", "wifi_password": WIFI_PASSWORD},
    {"controller": "a" * 253 + ":7480", "anchor_sha256": ANCHOR, "wifi_ssid": "x" * 32,
     "device_id": "d" * 32, "wifi_password": "é" * 64},             # the largest: 516 bytes
])
def test_token_round_trip(fields):
    text = encode_token(fields)
    assert decode_token(text) == dict(fields, version=1)
    assert parse_ndef(ndef_message(fields)) == dict(fields, version=1)
    assert set(text[4:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def test_typical_token_is_short_and_a_dense_qr_code():
    for fields in (TYPICAL, dict(TYPICAL, device_id="greenhouse-1")):
        text = encode_token(fields)
        assert len(text) < 120
        qr = segno.make_qr(text, error="m")
        assert qr.mode == "alphanumeric" and qr.version <= 6


@pytest.mark.parametrize("text, reason", [
    ("JOTX:AEWFWUQF", "does not start with 'JOT:'"),
    ("https://example.com/", "does not start with 'JOT:'"),
    ("JOT:AEWF0UQF", "not base32"),                                   # 0 is not base32
    ("JOT:A", "not base32"),                                          # an impossible length
    ("JOT:", "truncated: the token is empty"),
    (VECTORS[0][1][:30], "truncated: 16 bytes, a token has at least 41"),
    (VECTORS[0][1][:-8], "checksum mismatch"),                        # cut short
    (VECTORS[0][1][:20] + "Q" + VECTORS[0][1][21:], "checksum mismatch"),  # mistyped
    (sealed(b"\x02" + head()[1:]), "version 2 is not supported (this reads version 1)"),
    (sealed(head()[:-2]), "truncated: the controller's host runs past the end"),
    (sealed(head() + b"\x01"), "truncated: a field header runs past the end"),
    (sealed(head() + b"\x01\x09garden"), "truncated: field wifi_ssid runs past the end"),
    (sealed(head() + b"\x09\x01x"), "unknown field tag 9"),
    (sealed(head() + b"\x02\x01a\x02\x01b"), "field device_id given twice"),
    (sealed(head(port=0)), "agent.controller: expected host:port with a port from 1"),
    (sealed(head(host=b"hub/x")), "agent.controller: not a host name"),
    (sealed(head(host=b"\xff")), "controller is not UTF-8 text"),
    (sealed(head() + b"\x02\x03a b"), "device.id: may only contain"),
])
def test_bad_tokens_are_refused_with_their_reason(text, reason):
    with pytest.raises(ValueError) as e:
        decode_token(text)
    assert reason in str(e.value)


@pytest.mark.parametrize("change, reason", [
    ({"controller": None}, "controller is missing"),
    ({"anchor_sha256": ANCHOR[:20]}, "anchor_sha256 must be the 32 bytes"),
    ({"anchor_sha256": ANCHOR.hex()}, "anchor_sha256 must be the 32 bytes"),
    ({"controller": "tcp://hub:7480"}, "without a scheme"),
    ({"wifi_ssid": "s" * 33}, "wifi.ssid: too long"),
    ({"wifi_password": "p" * 65}, "wifi.password: too long"),
    ({"colour": "red"}, "unknown field colour"),
    ({"version": 2}, "version 2 cannot be written"),
])
def test_encode_refuses_fields_a_device_would_not_take(change, reason):
    fields = {k: v for k, v in dict(TYPICAL, **change).items() if v is not None}
    with pytest.raises(ValueError) as e:
        encode_token(fields)
    assert reason in str(e.value)
    assert "p" * 65 not in str(e.value)  # a secret is never in a message


def test_ndef_message_is_read_by_ndeflib_and_written_alike():
    fields = dict(TYPICAL, device_id="greenhouse-1")
    message = ndef_message(fields)
    records = list(ndef.message_decoder(message))
    assert len(records) == 1
    assert records[0].type == "urn:nfc:ext:jotunheim.dev:prov"
    assert bytes(records[0].data) == token_bytes(fields)
    record = ndef.Record("urn:nfc:ext:" + NDEF_TYPE.decode(), "", token_bytes(fields))
    assert b"".join(ndef.message_encoder([record])) == message

    # a long record (payload over 255 bytes), as ndeflib reads it
    big = {"controller": "a" * 253 + ":7480", "anchor_sha256": ANCHOR}
    records = list(ndef.message_decoder(ndef_message(big)))
    assert bytes(records[0].data) == token_bytes(big) and len(records[0].data) > 255

    # ours among other records, with an id and a type in capitals, as another writer may
    other = [ndef.UriRecord("https://jotunheim.dev/setup"),
             ndef.Record("urn:nfc:ext:Jotunheim.dev:PROV", "tag-1", token_bytes(fields))]
    assert parse_ndef(b"".join(ndef.message_encoder(other))) == dict(fields, version=1)


@pytest.mark.parametrize("data, reason", [
    (b"", "no jotunheim.dev:prov record"),
    (b"".join(ndef.message_encoder([ndef.UriRecord("https://x")])), "no jotunheim.dev:prov"),
    (ndef_message(TYPICAL)[:-3], "truncated NDEF message"),
    (ndef_message(TYPICAL)[:2], "truncated NDEF message"),
    (bytes([0xb4]) + ndef_message(TYPICAL)[1:], "chunked NDEF records are not supported"),
    (ndef_message(TYPICAL)[:-1] + b"\x00", "checksum mismatch"),
])
def test_bad_ndef_messages_are_refused(data, reason):
    with pytest.raises(ValueError) as e:
        parse_ndef(data)
    assert reason in str(e.value)


# ------------------------------------------------------------------ the verb, in-process


def provision(*argv, fmt="table"):
    """Run the provision verb as the jotunheim command does: its exit code."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", default=fmt)
    provision_arguments(parser)
    try:
        do_provision(parser.parse_args(argv))
    except CommandError as e:
        print("jotunheim: %s" % e, file=sys.stderr)
        if e.hint:
            print("jotunheim: %s" % e.hint, file=sys.stderr)
        return e.exit_code
    return 0


@pytest.fixture
def keys_path(tmp_path, monkeypatch):
    path = tmp_path / "config" / "jotunheim" / "keys.json"
    monkeypatch.setenv("JOTUNHEIM_KEYS", str(path))
    for name in ("JOTUNHEIM_WIFI_PASSWORD", "JOTUNHEIM_KEY"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "wifi-password"
    path.write_text(WIFI_PASSWORD + "\n")
    return str(path)


def test_token_verb_prints_qr_text_and_writes_ndef(tmp_path, capsys, keys_path, monkeypatch):
    monkeypatch.setenv("JOTUNHEIM_WIFI_PASSWORD", WIFI_PASSWORD)  # not used unless asked
    ndef_file = tmp_path / "tag.ndef"
    common = ("--token", "--controller", "hub.local:7480", "--anchor-fingerprint",
              ":".join("%02X" % b for b in ANCHOR), "--wifi-ssid", "garden")
    assert provision(*common, "--ndef", str(ndef_file), "--qr") == 0
    out = capsys.readouterr()
    token = out.out.splitlines()[0]
    assert decode_token(token) == dict(TYPICAL, version=1) and token == VECTORS[0][1]
    assert len(out.out.splitlines()) > 10 and "█" in out.out  # the QR code follows
    assert parse_ndef(ndef_file.read_bytes()) == dict(TYPICAL, version=1)
    assert "wifi_password" not in decode_token(token) and out.err == ""

    assert provision(*common, "--id", "greenhouse-1", fmt="json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert decode_token(shown["token"]) == dict(TYPICAL, version=1, device_id="greenhouse-1")
    assert shown["fields"]["anchor_sha256"] == ANCHOR.hex()

    assert provision(*common, "--include-wifi-password", fmt="json") == 0
    out = capsys.readouterr()
    shown = json.loads(out.out)
    assert decode_token(shown["token"])["wifi_password"] == WIFI_PASSWORD
    assert shown["fields"]["wifi_password"] == "***" and WIFI_PASSWORD not in out.out
    assert "WARNING" in out.err and "Wi-Fi password in clear" in out.err


@pytest.mark.parametrize("argv, code, complaint", [
    (("--token", "--controller", "hub:7480"), 2, "needs --controller and --anchor-fingerprint"),
    (("--token", "--controller", "hub:7480", "--anchor-fingerprint", "abcd"), 20, "64 hex"),
    (("--token", "--controller", "hub", "--anchor-fingerprint", ANCHOR.hex()), 20,
     "agent.controller: expected host:port"),
    (("--token", "--new-key", "--controller", "h:1", "--anchor-fingerprint", ANCHOR.hex()), 2,
     "touches no device"),
    (("socket://127.0.0.1:1", "--id", "x", "--qr"), 2, "--qr only with --token"),
    (("socket://127.0.0.1:1",), 2, "name the board (URL) and the device (--id)"),
    (("socket://127.0.0.1:1", "--id", "x", "--wifi-ssid", "garden"), 2,
     "the Wi-Fi password is needed"),
])
def test_verb_usage_errors(capsys, keys_path, argv, code, complaint):
    assert provision(*argv) == code
    assert complaint in capsys.readouterr().err


def test_key_store_is_private_and_what_the_hub_reads(tmp_path):
    path = str(tmp_path / "new" / "dir" / "keys.json")
    assert load_keys(path) == {}
    save_keys(path, {"greenhouse-1": KEY})
    save_keys(path, dict(load_keys(path), **{"shed": "ab" * 16}))
    assert stat.S_IMODE((tmp_path / "new" / "dir" / "keys.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "new" / "dir" / "keys.json").read_text()) == {
        "greenhouse-1": KEY, "shed": "ab" * 16}
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == ["keys.json"]
    Hub(keys=load_keys(path))  # the format jotunheim hub --keys takes


# ------------------------------------------------------------------ a simulated board


def quiet(**settings):
    """Deploy settings for a device that listens on loopback: it waits quietly, where a
    dialing device without a controller retries and resets."""
    return dict({"agent.mode": "listen", "agent.listen_host": "127.0.0.1",
                 "agent.listen_port": free_port()}, **settings)


def board_settings(device):
    """The board's /settings.json, read from its flash with the power off."""
    device.power_cut()
    return json.loads(device.read_file("/settings.json"))


def test_provision_a_board_over_mpremote(make_device, keys_path, password_file, capfd):
    device = make_device("micropython", network=GARDEN).start()
    deploy(device.url, "esp32", settings=quiet())
    fresh = board_settings(device)
    device.start()

    # a value the device would refuse, and a dry run: the board is left as it was
    base = (device.url, "--id", "greenhouse-1", "--wifi-ssid", "garden",
            "--wifi-password-file", password_file, "--new-key")
    assert provision(*base, "--controller", "nohost") == 20
    assert "settings: agent.controller: expected host:port" in capfd.readouterr().err
    assert provision(*base, "--controller", "127.0.0.1:7480", "--dry-run") == 0
    out = capfd.readouterr().out
    assert 'would set device.id = "greenhouse-1"' in out and 'auth.key = "***"' in out
    assert not keys_path.exists()
    assert board_settings(device) == fresh
    device.start()

    seen = {}

    async def scenario():
        loop = asyncio.get_running_loop()
        async with Hub() as hub:
            seen["controller"] = "127.0.0.1:%d" % hub.port
            argv = base + ("--controller", seen["controller"], "--name", "north bench",
                           "--mode", "dial")
            assert await loop.run_in_executor(None, lambda: provision(*argv)) == 0
            seen["output"] = capfd.readouterr()
            hub.keys = {k: bytes.fromhex(v) for k, v in load_keys(str(keys_path)).items()}
            await loop.run_in_executor(None, device.reset)   # joins garden, dials the hub
            d = await hub.device("greenhouse-1", timeout=60)
            assert await d.call("device_echo", value="provisioned") == "provisioned"
    run(scenario())
    console_lines(device, r"joined garden")

    stored = load_keys(str(keys_path))
    assert list(stored) == ["greenhouse-1"] and len(stored["greenhouse-1"]) == 64
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600
    settings = board_settings(device)
    assert settings == dict(fresh, **{
        "device.id": "greenhouse-1", "device.name": "north bench", "wifi.ssid": "garden",
        "wifi.password": WIFI_PASSWORD, "auth.key": stored["greenhouse-1"],
        "agent.mode": "dial", "agent.controller": seen["controller"]})
    output = seen["output"].out + seen["output"].err
    assert "set device.id" in output and "keys.json" in output
    for secret in (stored["greenhouse-1"], WIFI_PASSWORD):
        assert secret not in output and secret.upper() not in output
    with pytest.raises(OSError):
        device.read_file("/settings.json.tmp")


def test_provision_a_board_with_a_given_key_keeps_what_is_there(make_device, keys_path,
                                                               tmp_path, capfd):
    device = make_device("micropython").start()
    deploy(device.url, "esp32", settings=quiet(**{"log.level": "debug", "wifi.ssid": "old",
                                                  "wifi.password": "old password"}))
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert provision(device.url, "--id", "shed", "--key-file", str(key_file),
                     "--controller", "hub.local:7480", fmt="json") == 0
    report = json.loads(capfd.readouterr().out)
    assert report["changed"] == {"agent.controller": "hub.local:7480", "auth.key": "***",
                                 "device.id": "shed"}
    assert report["written"] and report["key_store"] is None and not keys_path.exists()
    settings = board_settings(device)
    assert settings["auth.key"] == KEY and settings["log.level"] == "debug"
    assert settings["wifi.password"] == "old password"   # not asked: kept

    device.start()  # the same again: nothing to write
    assert provision(device.url, "--id", "shed", "--key-file", str(key_file),
                     "--controller", "hub.local:7480", fmt="json") == 0
    report = json.loads(capfd.readouterr().out)
    assert report["changed"] == {} and not report["written"]


def test_a_board_without_firmware_is_refused(make_device, keys_path, capfd):
    device = make_device("micropython").start()
    assert provision(device.url, "--id", "x", "--controller", "hub:7480") == 30
    err = capfd.readouterr().err
    assert "no readable /board.json" in err and "jotunheim deploy" in err


def test_provision_a_running_agent_over_tcp(make_device, keys_path, tmp_path, capfd,
                                            monkeypatch):
    device, port = listening(make_device, "cpython", {"auth.key": KEY})
    url = "tcp://127.0.0.1:%d" % port
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    assert provision(url, "--id", "bench", "--key-file", str(key_file), "--controller",
                     "nohost") == 20
    assert "agent.controller" in capfd.readouterr().err and not keys_path.exists()

    # the key that opens the agent comes from JOTUNHEIM_KEY (or --key-file), as for the
    # other device verbs; --new-key replaces it
    monkeypatch.setenv("JOTUNHEIM_KEY", KEY)
    assert provision(url, "--id", "bench", "--name", "the bench", "--new-key") == 0
    out = capfd.readouterr()
    new_key = load_keys(str(keys_path))["bench"]
    assert new_key not in out.out + out.err and 'set device.id = "bench"' in out.out
    console_lines(device, r"listening on port", count=2)  # started again with the new key

    async def scenario():
        d = await connect(url, key=bytes.fromhex(new_key), reconnect=False)
        values = await d.settings("device.id", "device.name", "auth.key")
        await d.close()
        return values
    assert run(scenario()) == {"device.id": "bench", "device.name": "the bench",
                               "auth.key": "***"}


def test_token_round_trip_through_the_installed_command(tmp_path):
    """jotunheim provision --token, as a user runs it: the token, the NFC record file."""
    import subprocess

    from test_cli import jotunheim_command
    anchor = hashlib.sha256(b"the hub's public key").hexdigest()
    ndef_file = tmp_path / "token.ndef"
    done = subprocess.run([jotunheim_command(), "--format", "json", "provision", "--token",
                           "--controller", "hub.local:7480", "--anchor-fingerprint", anchor,
                           "--wifi-ssid", "garden", "--ndef", str(ndef_file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    fields = decode_token(printed["token"])
    assert (fields["controller"], fields["anchor_sha256"].hex(), fields["wifi_ssid"]) == (
        "hub.local:7480", anchor, "garden")
    assert parse_ndef(ndef_file.read_bytes()) == fields
