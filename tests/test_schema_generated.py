"""protocol/schema.py and enums.py are generated from jotunheim.proto and must be current."""

from jotunheim_host import schemagen


def test_checked_in_schema_is_current():
    schema_text, enums_text = schemagen.generate()
    with open(schemagen.OUTPUTS[0]) as f:
        assert f.read() == schema_text, "run: python -m jotunheim_host.schemagen"
    with open(schemagen.OUTPUTS[1]) as f:
        assert f.read() == enums_text, "run: python -m jotunheim_host.schemagen"


def test_generator_notices_a_changed_proto(tmp_path):
    with open(schemagen.PROTO) as f:
        text = f.read()
    changed = tmp_path / "jotunheim.proto"
    changed.write_text(text.replace("uint32 deadline_ms = 5;", "uint32 deadline_ms = 5;\n  bool urgent = 15;"))
    schema_text, _ = schemagen.generate(str(changed))
    with open(schemagen.OUTPUTS[0]) as f:
        assert f.read() != schema_text
    assert "'urgent'" in schema_text


def test_message_types_name_real_messages():
    import protocol
    from protocol import enums
    values = enums.ENUM_VALUES[enums.ENUM_NAMES.index("MessageType")]
    for name, number in zip(values[::2], values[1::2]):
        if number:
            assert protocol.message_name(number) is not None, name
