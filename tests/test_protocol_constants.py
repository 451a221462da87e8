"""The encoder's and decoder's private copies of codec's kinds and labels (constants the
MicroPython compiler writes into the code) agree with codec's, and codec's with the
schema generator's; the codec's caches can be emptied and fill again."""
import re

import pytest

from protocol import codec, decoder, encoder
from jotunheim_host import schemagen

CONST = re.compile(r"^_([A-Z0-9]+) = const\((\d+)\)$", re.M)


@pytest.mark.parametrize("module", [decoder, encoder], ids=["decoder", "encoder"])
def test_private_constants_agree_with_codec(module):
    with open(module.__file__) as f:
        found = CONST.findall(f.read())
    assert len(found) >= 15
    for name, value in found:
        assert getattr(codec, name) == int(value) == getattr(module, "_" + name), name


def test_codec_kinds_are_the_schema_generators():
    for index, kind in enumerate(schemagen.KINDS):
        assert getattr(codec, kind.upper()) == index, kind


def test_forgotten_caches_fill_again_with_the_same_results():
    """protocol.forget_caches() (what a device sheds when it needs heap) loses nothing."""
    import protocol
    payload = protocol.encode("ToolCall", {"request_id": 3, "tool_id": 2, "args": {"x": 1}})
    before = protocol.decode("ToolCall", payload)
    assert decoder._templates and codec._index_cache
    protocol.forget_caches()
    assert not decoder._templates and not codec._index_cache
    assert protocol.decode("ToolCall", payload) == before
    assert protocol.message_type("ToolCall") == 16
