"""The jotunheim verbs for streams: follow a stream, save one (or a device file) to a local
file, send a local file to the device (protocol/SPEC.md 1.11)."""
# Each verb opens its stream with the controller library (jotunheim_host.streams) inside
# device_verbs.run_device, which turns the controller's failures into CommandErrors.
import hashlib
import json
import sys

from jotunheim_host import frames
from jotunheim_host.device_verbs import emit, run_device, url_argument
from jotunheim_host.errors import EXIT_MISSING, EXIT_RUNTIME, EXIT_USAGE, CommandError
from jotunheim_host.maker_verbs import progress_bar

KINDS = ("sensor", "log", "raw", "file", "audio", "video")


def stream_params(args):
    """The StreamOpen params the options give."""
    params = {}
    for item in args.param or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError("--param wants KEY=VALUE, not %r" % item, EXIT_USAGE,
                               hint="e.g. --param count=3 (VALUE is JSON when it parses)")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    for option, key in (("rate", "rate_hz"), ("count", "count"),
                        ("duration_ms", "duration_ms"), ("level", "level"),
                        ("codec", "codec"), ("chunk", "chunk")):
        value = getattr(args, option, None)
        if value is not None:
            params[key] = value
    return params


def byte_counter(stream=sys.stderr):
    """A progress(done, total) callback counting bytes on a terminal (nothing else), for
    transfers whose size is not known ahead."""
    if not stream.isatty():
        return None

    def show(done, total):
        stream.write("\r%d bytes" % done)
        stream.flush()
    return show


def _stream_error(e):
    return CommandError(str(e), EXIT_RUNTIME, details={"status": e.status_name,
                                                       "message": e.message})


def do_follow(args):
    """Print a stream as it comes: sensor samples ("T_US VALUE", the device's clock), log
    lines, or a raw stream's bytes; with --format json one JSON object a line. Ends with
    the stream, after --limit items, or at Ctrl-C."""
    from jotunheim_host import streams
    params = stream_params(args)

    async def work(device):
        stream = await device.open_stream(args.kind, "out", args.source or "", params)
        if args.kind == "sensor":
            items = streams.samples(stream)
            show = _sample
        elif args.kind == "log":
            items = streams.lines(stream)
            show = _line
        else:
            items = stream
            show = _chunk
        shown = 0
        try:
            async for item in items:
                show(args, item)
                shown += 1
                if args.limit and shown >= args.limit:
                    await stream.close()
                    break
        except streams.StreamError as e:
            raise _stream_error(e) from None
    run_device(args, work)


def _sample(args, sample):
    if args.format == "json":
        print(json.dumps({"t_us": sample[0], "value": sample[1]}), flush=True)
    else:
        print("%d %d" % sample, flush=True)


def _line(args, line):
    print(json.dumps({"line": line}) if args.format == "json" else line, flush=True)


def _chunk(args, chunk):
    if args.format == "json":
        print(frames.to_json({"offset": chunk.offset, "timestamp_us": chunk.timestamp_us,
                              "data": chunk.data}), flush=True)
    else:
        sys.stdout.buffer.write(chunk.data)
        sys.stdout.buffer.flush()


def follow_arguments(parser):
    url_argument(parser)
    parser.add_argument("kind", choices=KINDS, help="the kind of stream")
    parser.add_argument("source", nargs="?", default="",
                        help="sensor: adc:PIN or pin:PIN; raw: a stream script's NAME")
    _stream_options(parser)
    parser.add_argument("--limit", type=int, default=0,
                        help="stop after this many samples, lines or chunks")


def _stream_options(parser):
    parser.add_argument("--rate", type=float, default=None, help="sensor: samples a second")
    parser.add_argument("--count", type=int, default=None, help="sensor: samples in all")
    parser.add_argument("--duration-ms", type=int, default=None,
                        help="sensor: how long to sample")
    parser.add_argument("--level", default=None, choices=("debug", "info", "warning", "error"),
                        help="log: the least level sent")
    parser.add_argument("--codec", default=None, help="a codec plugin, e.g. delta (sensor)")
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="another stream parameter (a raw script's arguments); repeat")


def do_save(args):
    """Save a device file (kind file: its SHA-256 is checked) or a stream's data to a local
    file; sensor samples are saved as JSON with --format json, else as the raw bytes."""
    from jotunheim_host import streams
    if args.kind == "file" and not args.source:
        raise CommandError("save file needs the device file's path", EXIT_USAGE)
    try:
        out = open(args.output, "wb")
    except OSError as e:
        raise CommandError("cannot write %s: %s" % (args.output, e.strerror), EXIT_MISSING)

    async def work(device):
        if args.kind == "file":
            copied = await streams.download(device, args.source, out, byte_counter())
            if sys.stderr.isatty():
                sys.stderr.write("\n")
            return {"saved": args.output, "source": args.source, "bytes": copied}
        stream = await device.open_stream(args.kind, "out", args.source, stream_params(args))
        if args.kind == "sensor" and args.format == "json":
            samples = [{"t_us": t, "value": v} async for t, v in streams.samples(stream)]
            out.write(json.dumps(samples).encode())
            return {"saved": args.output, "source": args.source, "samples": len(samples),
                    "bytes": stream.received}
        count = 0
        async for chunk in stream:
            out.write(chunk.data)
            count += 1
            if args.limit and count >= args.limit:
                await stream.close()
                break
        return {"saved": args.output, "source": args.source, "bytes": stream.received}
    try:
        report = run_device(args, work)
    except streams.StreamError as e:
        raise _stream_error(e) from None
    finally:
        out.close()
    with open(args.output, "rb") as f:
        report["sha256"] = hashlib.sha256(f.read()).hexdigest()
    emit(args, report, ["saved %d bytes of %s to %s (sha256 %s)" % (
        report["bytes"], args.source or args.kind, args.output, report["sha256"])])


def save_arguments(parser):
    url_argument(parser)
    parser.add_argument("kind", choices=KINDS, help="file: a device file; else a stream")
    parser.add_argument("source", nargs="?", default="",
                        help="file: the device path; sensor: adc:PIN or pin:PIN; raw: NAME")
    parser.add_argument("-o", "--output", required=True, help="the local file to write")
    _stream_options(parser)
    parser.add_argument("--limit", type=int, default=0, help="stop after this many chunks")


def do_send(args):
    """Send a local file to the device's storage: written to a temporary file, checked
    (size, SHA-256) and renamed into place, so the old file stays if anything fails."""
    from jotunheim_host import streams
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CommandError("cannot read %s: %s" % (args.file, e.strerror), EXIT_MISSING)
    digest = hashlib.sha256(data).hexdigest()
    if args.dry_run:
        async def check(device):
            features = (await device.capabilities())["features"]
            return "file" in features.get("stream_kinds", ())
        if not run_device(args, check):
            raise CommandError("the device takes no file streams", EXIT_RUNTIME,
                               hint="its firmware lacks jotunheim/streams.py")
        emit(args, {"dry_run": True, "would_send": args.file, "to": args.destination,
                    "bytes": len(data), "sha256": digest},
             ["would send %s (%d bytes, sha256 %s) to %s (nothing was changed)" % (
                 args.file, len(data), digest, args.destination)])
        return
    bar = progress_bar()

    async def work(device):
        progress = (lambda done, total: bar(done, total, args.destination)) if bar else None
        return await streams.upload(device, args.destination, data, progress,
                                    resume=args.resume)
    try:
        run_device(args, work)
    except streams.StreamError as e:
        raise _stream_error(e) from None
    emit(args, {"sent": args.file, "to": args.destination, "bytes": len(data),
                "sha256": digest},
         ["sent %s to %s: %d bytes, sha256 %s checked by the device" % (
             args.file, args.destination, len(data), digest)])


def send_arguments(parser):
    url_argument(parser)
    parser.add_argument("file", help="the local file")
    parser.add_argument("destination", help="the device path, e.g. /data/table.csv")
    parser.add_argument("--resume", action="store_true",
                        help="go on where an earlier send of this file was cut off")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the file and the device, send nothing")


VERBS = {
    "follow": (do_follow, follow_arguments, "print a stream: sensor samples, log lines, ...",
               "jotunheim follow tcp://127.0.0.1:7480 sensor adc:34 --rate 20 --count 100"),
    "save": (do_save, save_arguments, "save a device file or a stream to a local file",
             "jotunheim save tcp://127.0.0.1:7480 file /data/log.csv -o log.csv"),
    "send": (do_send, send_arguments, "send a local file to the device's storage",
             "jotunheim send tcp://127.0.0.1:7480 table.csv /data/table.csv --dry-run"),
}
