"""Google's protobuf, built from jotunheim.proto at run time: the reference implementation."""

import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALUE_MESSAGE = "jotunheim.v1.Value"
_module = None


def google_module(tmp_dir):
    """Compile jotunheim.proto with grpc_tools' protoc into tmp_dir and import it (once)."""
    global _module
    if _module is None:
        from grpc_tools import protoc
        proto_dir = os.path.join(ROOT, "protocol")
        if protoc.main(["protoc", "-I" + proto_dir, "--python_out=" + str(tmp_dir),
                        os.path.join(proto_dir, "jotunheim.proto")]) != 0:
            raise RuntimeError("protoc failed on protocol/jotunheim.proto")
        sys.path.insert(0, str(tmp_dir))
        try:
            _module = importlib.import_module("jotunheim_pb2")
        finally:
            sys.path.remove(str(tmp_dir))
    return _module


def to_google(pb2, type_name, fields):
    """The Google message equal to our dict form of a message of type type_name."""
    return fill(getattr(pb2, type_name)(), fields)


def fill(message, fields):
    """Fill a Google message from the dict our codec takes (enum names or numbers)."""
    for name, value in fields.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        kind = field.message_type
        if value is None and (kind is None or kind.full_name != VALUE_MESSAGE):
            continue  # None means absent, except in a Value, where it is null
        if kind is not None and kind.GetOptions().map_entry:
            target = getattr(message, name)
            for key, item in value.items():
                if kind.fields_by_name["value"].message_type is None:
                    target[key] = item
                else:
                    _fill_message(target[key], item)
        elif field.is_repeated:
            target = getattr(message, name)
            for item in value:
                if kind is None:
                    target.append(_scalar(field, item))
                else:
                    _fill_message(target.add(), item)
        elif kind is not None:
            _fill_message(getattr(message, name), value)
        else:
            setattr(message, name, _scalar(field, value))
    return message


def _fill_message(target, value):
    target.SetInParent()
    if target.DESCRIPTOR.full_name == VALUE_MESSAGE:
        _set_value(target, value)
    else:
        fill(target, value)


def _scalar(field, value):
    if field.enum_type is not None and isinstance(value, str):
        return field.enum_type.values_by_name[value].number
    return value


def _set_value(target, value):
    """Fill a jotunheim.v1.Value message from a native value."""
    if value is None:
        target.null_value = 0
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.float_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, (bytes, bytearray)):
        target.bytes_value = bytes(value)
    elif isinstance(value, (list, tuple)):
        target.list_value.SetInParent()
        for item in value:
            _set_value(target.list_value.values.add(), item)
    else:
        target.map_value.SetInParent()
        for key, item in value.items():
            _set_value(target.map_value.entries[key], item)
