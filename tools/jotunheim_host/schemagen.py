"""Generate protocol/schema.py and enums.py, the codec's tables, from jotunheim.proto.

The .proto is parsed by the real protoc (from grpcio-tools) into descriptors, so the
tables cannot drift from what every other protobuf implementation sees. The output is
plain tuples of ints and strings that MicroPython imports cheaply.

Run ``python -m jotunheim_host.schemagen`` after editing the .proto; a test fails while
the checked-in schema.py is stale.
"""

import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join(ROOT, "protocol", "jotunheim.proto")
OUTPUTS = (os.path.join(ROOT, "protocol", "schema.py"), os.path.join(ROOT, "protocol", "enums.py"))
VALUE_TYPE = ".jotunheim.v1.Value"

# Field kinds, in the order protocol/codec.py expects them.
KINDS = ("int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "enum",
         "fixed32", "fixed64", "sfixed32", "sfixed64", "float", "double",
         "string", "bytes", "message", "value")
LABEL_IMPLICIT, LABEL_EXPLICIT, LABEL_REPEATED, LABEL_MAP = 0, 1, 2, 3


def load_descriptor(proto_path=PROTO):
    """Run protoc on the schema and return its FileDescriptorProto."""
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "schema.pb")
        args = ["protoc", "-I" + os.path.dirname(proto_path), "-I" + include,
                "--descriptor_set_out=" + out, os.path.basename(proto_path)]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed on " + proto_path)
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    return fds.file[0]


def _snake_upper(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def _kind_of(field, FieldDescriptorProto):
    t = field.type
    if t == FieldDescriptorProto.TYPE_MESSAGE:
        return "value" if field.type_name == VALUE_TYPE else "message"
    if t == FieldDescriptorProto.TYPE_ENUM:
        return "enum"
    name = FieldDescriptorProto.Type.Name(t)[5:].lower()
    if name not in KINDS:
        raise SystemExit("unsupported field type %s for %s" % (name, field.name))
    return name


def build_tables(fd):
    """Return (messages, enums) as plain tuples from a FileDescriptorProto."""
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F

    prefix = "." + fd.package + "."
    enums = [(e.name, tuple((v.name, v.number) for v in e.value)) for e in fd.enum_type]
    enum_index = {prefix + e[0]: i for i, e in enumerate(enums)}
    msgs = [m for m in fd.message_type]
    msg_index = {prefix + m.name: i for i, m in enumerate(msgs)}
    type_ids = {}
    for name, values in enums:
        if name == "MessageType":
            type_ids = {v: n for v, n in values if n}
    by_upper = {_snake_upper(m.name): m.name for m in msgs}
    for upper in type_ids:
        if upper not in by_upper:
            raise SystemExit("MessageType %s names no message" % upper)

    def sub_of(field):
        if field.type == F.TYPE_MESSAGE and field.type_name != VALUE_TYPE:
            return msg_index[field.type_name]
        if field.type == F.TYPE_ENUM:
            return enum_index[field.type_name]
        return -1

    messages = []
    for m in msgs:
        nested = {prefix + m.name + "." + n.name: n for n in m.nested_type}
        real_oneofs = {}
        for f in m.field:
            if f.HasField("oneof_index") and not f.proto3_optional:
                real_oneofs.setdefault(f.oneof_index, len(real_oneofs) + 1)
        fields = []
        for f in sorted(m.field, key=lambda f: f.number):
            oneof = real_oneofs.get(f.oneof_index, 0) if f.HasField("oneof_index") else 0
            entry = nested.get(f.type_name)
            if entry is not None and entry.options.map_entry:
                key, val = sorted(entry.field, key=lambda f: f.number)
                sub = (KINDS.index(_kind_of(key, F)), KINDS.index(_kind_of(val, F)), sub_of(val))
                fields.append((f.number, f.name, KINDS.index("message"), LABEL_MAP, sub, 0))
                continue
            if f.label == F.LABEL_REPEATED:
                label = LABEL_REPEATED
            elif f.type == F.TYPE_MESSAGE or f.HasField("oneof_index"):
                label = LABEL_EXPLICIT
            else:
                label = LABEL_IMPLICIT
            fields.append((f.number, f.name, KINDS.index(_kind_of(f, F)), label, sub_of(f), oneof))
        type_id = type_ids.get(_snake_upper(m.name), 0)
        messages.append((m.name, type_id, tuple(fields)))
    return tuple(messages), tuple(enums)


def render(messages, enums):
    """Render the tables as the sources of protocol/schema.py and protocol/enums.py.

    The device keeps schema.py in RAM, so it is packed: one bytes object with six bytes
    per field, one tuple of unique field names, one bytes object with four bytes per
    message. Enum names, needed only by hosts and by encoders given names, live apart.
    """
    names = []
    maps = []
    fields_blob = bytearray()
    table = bytearray()
    for name, type_id, fields in messages:
        start = len(fields_blob) // 6
        for number, fname, kind, label, sub, oneof in fields:
            if fname not in names:
                names.append(fname)
            if label == LABEL_MAP:
                if sub not in maps:
                    maps.append(sub)
                sub = maps.index(sub)
            elif sub < 0:
                sub = 255
            if number > 255 or sub > 255 or len(names) > 255 or oneof > 255:
                raise SystemExit("schema too large for the packed tables: " + fname)
            fields_blob += bytes((number, kind, label, sub, oneof, names.index(fname)))
        if type_id > 255 or len(fields) > 255 or start > 0xFFFF:
            raise SystemExit("schema too large for the packed tables: " + name)
        table += bytes((type_id, start & 0xFF, start >> 8, len(fields)))
    by_type = bytearray(b"\xff" * (1 + max(m[1] for m in messages)))
    for idx, (_, type_id, _) in enumerate(messages):
        if type_id:
            by_type[type_id] = idx
    out = [
        "# Generated from jotunheim.proto by tools/jotunheim_host/schemagen.py. Do not edit.",
        "# FIELDS: six bytes a field: number, kind (schemagen.KINDS), label (0 implicit,",
        "# 1 explicit presence, 2 repeated, 3 map), sub (message or enum index, MAPS index for",
        "# a map, 255 for none), oneof group (0 for none), index into FIELD_NAMES.",
        "# MESSAGE_TABLE: four bytes a message: frame type, first field (16-bit LE), count.",
        "# TYPE_INDEX: the message index of each frame type (255 for none).",
        "",
        "# Names are tuples: constants, which frozen code keeps in ROM and an .mpy file",
        "# builds in less heap than a list (measured on MicroPython 1.29).",
        "MESSAGE_NAMES = %s" % _wrap(tuple(m[0] for m in messages)),
        "",
        "MESSAGE_TABLE = %s" % _wrap_bytes(bytes(table)),
        "",
        "TYPE_INDEX = %s" % _wrap_bytes(bytes(by_type)),
        "",
        "FIELDS = %s" % _wrap_bytes(bytes(fields_blob)),
        "",
        "FIELD_NAMES = %s" % _wrap(tuple(names)),
        "",
        "MAPS = %r" % (tuple(maps),),
        "",
    ]
    enum_out = [
        "# Generated from jotunheim.proto by tools/jotunheim_host/schemagen.py. Do not edit.",
        "# Enum value names, and constants for message types and status codes. Tuples: see",
        "# schema.py.",
        "# ENUM_VALUES[i] alternates value names and numbers for enum ENUM_NAMES[i].",
        "from ._compat import const",
        "",
        "ENUM_NAMES = %s" % _wrap(tuple(name for name, _ in enums)),
        "",
        "ENUM_VALUES = (",
    ]
    for name, values in enums:
        flat = []
        for vname, number in values:
            flat += [vname, number]
        enum_out.append("    %s," % _wrap(flat, 84).replace("\n", "\n    "))
    enum_out += [")", ""]
    for name, values in enums:
        if name in ("MessageType", "Status"):
            for vname, number in values:
                if number or name == "Status":
                    enum_out.append("%s = const(%d)" % (vname, number))
            enum_out.append("")
    return "\n".join(out), "\n".join(enum_out)


def _wrap(items, width=88):
    lines = ["("]
    line = "   "
    for item in items:
        piece = " %r," % (item,)
        if len(line) + len(piece) > width:
            lines.append(line)
            line = "   "
        line += piece
    lines.append(line)
    lines.append(")")
    return "\n".join(lines)


def _wrap_bytes(data, width=64):
    lines = ["("]
    for i in range(0, len(data), width // 4):
        lines.append("    b'%s'" % "".join("\\x%02x" % b for b in data[i:i + width // 4]))
    lines.append(")")
    return "\n".join(lines)


def generate(proto_path=PROTO):
    """Return the text of (schema.py, enums.py)."""
    return render(*build_tables(load_descriptor(proto_path)))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    outputs = dict(zip(OUTPUTS, generate()))
    if argv and argv[0] == "--check":
        for path, text in outputs.items():
            with open(path) as f:
                if f.read() != text:
                    print("%s is stale: run python -m jotunheim_host.schemagen" % path)
                    return 1
        return 0
    for path, text in outputs.items():
        with open(path, "w") as f:
            f.write(text)
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
