# Generated from jotunheim.proto by tools/jotunheim_host/schemagen.py. Do not edit.
# MESSAGES: (name, frame type, fields); field: (number, name, kind, label, sub, oneof).
# kind indexes KINDS; label: 0 implicit, 1 explicit presence, 2 repeated, 3 map;
# sub: message or enum index, or (key kind, value kind, value sub) for a map.
from ._compat import const

KINDS = ('int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'bool', 'enum', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'float', 'double', 'string', 'bytes', 'message', 'value')

MESSAGES = (
    ('Value', 0, (
        (1, 'null_value', 7, 1, 2, 1),
        (2, 'bool_value', 6, 1, -1, 1),
        (3, 'int_value', 5, 1, -1, 1),
        (4, 'float_value', 13, 1, -1, 1),
        (5, 'string_value', 14, 1, -1, 1),
        (6, 'bytes_value', 15, 1, -1, 1),
        (7, 'list_value', 16, 1, 1, 1),
        (8, 'map_value', 16, 1, 2, 1),
    )),
    ('ListValue', 0, (
        (1, 'values', 17, 2, -1, 0),
    )),
    ('MapValue', 0, (
        (1, 'entries', 16, 3, (14, 17, -1), 0),
    )),
    ('Hello', 1, (
        (1, 'version_min', 2, 0, -1, 0),
        (2, 'version_max', 2, 0, -1, 0),
        (3, 'role', 7, 0, 3, 0),
        (4, 'device_id', 14, 0, -1, 0),
        (5, 'name', 14, 0, -1, 0),
        (6, 'device_type', 7, 0, 4, 0),
        (7, 'firmware_version', 14, 0, -1, 0),
        (8, 'max_frame', 2, 0, -1, 0),
        (9, 'auth_required', 6, 0, -1, 0),
    )),
    ('AuthChallenge', 2, (
        (1, 'nonce', 15, 0, -1, 0),
        (2, 'algorithm', 14, 0, -1, 0),
    )),
    ('AuthResponse', 3, (
        (1, 'mac', 15, 0, -1, 0),
        (2, 'client_nonce', 15, 0, -1, 0),
    )),
    ('AuthResult', 4, (
        (1, 'status', 7, 0, 1, 0),
        (2, 'message', 14, 0, -1, 0),
        (3, 'mac', 15, 0, -1, 0),
    )),
    ('CapabilitiesRequest', 5, (
        (1, 'request_id', 2, 0, -1, 0),
    )),
    ('CapabilityChanged', 7, (
        (1, 'revision', 2, 0, -1, 0),
        (2, 'reason', 14, 0, -1, 0),
    )),
    ('Ping', 8, (
        (1, 'seq', 2, 0, -1, 0),
        (2, 'time_ms', 3, 0, -1, 0),
    )),
    ('Pong', 9, (
        (1, 'seq', 2, 0, -1, 0),
        (2, 'time_ms', 3, 0, -1, 0),
    )),
    ('Error', 10, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'status', 7, 0, 1, 0),
        (3, 'message', 14, 0, -1, 0),
        (4, 'message_type', 2, 0, -1, 0),
    )),
    ('Ack', 11, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'status', 7, 0, 1, 0),
        (3, 'message', 14, 0, -1, 0),
    )),
    ('Goodbye', 12, (
        (1, 'status', 7, 0, 1, 0),
        (2, 'reason', 14, 0, -1, 0),
    )),
    ('LogRecord', 13, (
        (1, 'time_ms', 3, 0, -1, 0),
        (2, 'level', 7, 0, 5, 0),
        (3, 'source', 14, 0, -1, 0),
        (4, 'message', 14, 0, -1, 0),
        (5, 'fields', 16, 3, (14, 17, -1), 0),
    )),
    ('Parameter', 0, (
        (1, 'name', 14, 0, -1, 0),
        (2, 'type', 7, 0, 6, 0),
        (3, 'required', 6, 0, -1, 0),
        (4, 'description', 14, 0, -1, 0),
        (5, 'default_value', 17, 1, -1, 0),
        (6, 'minimum', 13, 1, -1, 0),
        (7, 'maximum', 13, 1, -1, 0),
        (8, 'choices', 17, 2, -1, 0),
    )),
    ('Returns', 0, (
        (1, 'type', 7, 0, 6, 0),
        (2, 'description', 14, 0, -1, 0),
    )),
    ('Tool', 0, (
        (1, 'id', 2, 0, -1, 0),
        (2, 'name', 14, 0, -1, 0),
        (3, 'description', 14, 0, -1, 0),
        (4, 'parameters', 16, 2, 15, 0),
        (5, 'returns', 16, 1, 16, 0),
        (6, 'kind', 7, 0, 7, 0),
    )),
    ('Device', 0, (
        (1, 'id', 14, 0, -1, 0),
        (2, 'name', 14, 0, -1, 0),
        (3, 'type', 7, 0, 4, 0),
        (4, 'firmware_version', 14, 0, -1, 0),
        (5, 'protocol_version', 2, 0, -1, 0),
        (6, 'board', 14, 0, -1, 0),
    )),
    ('Gpio', 0, (
        (1, 'available', 2, 2, -1, 0),
        (2, 'digital', 2, 2, -1, 0),
        (3, 'analog', 2, 2, -1, 0),
        (4, 'pwm', 2, 2, -1, 0),
        (5, 'input_only', 2, 2, -1, 0),
    )),
    ('Component', 0, (
        (1, 'kind', 14, 0, -1, 0),
        (2, 'name', 14, 0, -1, 0),
        (3, 'pins', 2, 2, -1, 0),
        (4, 'bus', 14, 0, -1, 0),
        (5, 'address', 2, 0, -1, 0),
    )),
    ('Hardware', 0, (
        (1, 'gpio', 16, 1, 19, 0),
        (2, 'interfaces', 14, 2, -1, 0),
        (3, 'sensors', 16, 2, 20, 0),
        (4, 'actuators', 16, 2, 20, 0),
    )),
    ('Resources', 0, (
        (1, 'max_memory', 3, 0, -1, 0),
        (2, 'free_memory', 3, 0, -1, 0),
        (3, 'cpu_mhz', 2, 0, -1, 0),
        (4, 'max_concurrent_tools', 2, 0, -1, 0),
        (5, 'max_frame', 2, 0, -1, 0),
        (6, 'storage_total', 3, 0, -1, 0),
        (7, 'storage_free', 3, 0, -1, 0),
    )),
    ('Features', 0, (
        (1, 'streaming', 6, 0, -1, 0),
        (2, 'compression', 14, 2, -1, 0),
        (3, 'encryption', 14, 2, -1, 0),
        (4, 'script_languages', 14, 2, -1, 0),
        (5, 'stream_kinds', 14, 2, -1, 0),
        (6, 'plugins', 14, 2, -1, 0),
        (7, 'ota_method', 14, 0, -1, 0),
    )),
    ('Capabilities', 6, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'revision', 2, 0, -1, 0),
        (3, 'device', 16, 1, 18, 0),
        (4, 'tools', 16, 2, 17, 0),
        (5, 'hardware', 16, 1, 21, 0),
        (6, 'resources', 16, 1, 22, 0),
        (7, 'features', 16, 1, 23, 0),
    )),
    ('ToolCall', 16, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'tool_id', 2, 1, -1, 1),
        (3, 'tool_name', 14, 1, -1, 1),
        (4, 'args', 16, 3, (14, 17, -1), 0),
        (5, 'deadline_ms', 2, 0, -1, 0),
    )),
    ('ToolResult', 17, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'status', 7, 0, 1, 0),
        (3, 'value', 17, 1, -1, 0),
        (4, 'error', 14, 0, -1, 0),
    )),
    ('CancelCall', 18, (
        (1, 'request_id', 2, 0, -1, 0),
    )),
    ('ScriptLimits', 0, (
        (1, 'timeout_ms', 2, 0, -1, 0),
        (2, 'memory_bytes', 2, 0, -1, 0),
        (3, 'storage_bytes', 2, 0, -1, 0),
        (4, 'concurrency', 2, 0, -1, 0),
        (5, 'instructions', 3, 0, -1, 0),
    )),
    ('ScriptRegister', 24, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'name', 14, 0, -1, 0),
        (3, 'language', 14, 0, -1, 0),
        (4, 'source', 14, 0, -1, 0),
        (5, 'description', 14, 0, -1, 0),
        (6, 'parameters', 16, 2, 15, 0),
        (7, 'returns', 16, 1, 16, 0),
        (8, 'limits', 16, 1, 28, 0),
        (9, 'streams', 6, 0, -1, 0),
        (10, 'replace', 6, 0, -1, 0),
    )),
    ('ScriptUnregister', 25, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'name', 14, 0, -1, 0),
    )),
    ('ScriptList', 26, (
        (1, 'request_id', 2, 0, -1, 0),
    )),
    ('ScriptInfo', 0, (
        (1, 'name', 14, 0, -1, 0),
        (2, 'language', 14, 0, -1, 0),
        (3, 'description', 14, 0, -1, 0),
        (4, 'size', 2, 0, -1, 0),
        (5, 'sha256', 15, 0, -1, 0),
        (6, 'tools', 14, 2, -1, 0),
        (7, 'limits', 16, 1, 28, 0),
    )),
    ('ScriptListResult', 27, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'status', 7, 0, 1, 0),
        (3, 'scripts', 16, 2, 32, 0),
    )),
    ('ChildrenStatusRequest', 28, (
        (1, 'request_id', 2, 0, -1, 0),
    )),
    ('ChildStatus', 0, (
        (1, 'name', 14, 0, -1, 0),
        (2, 'state', 7, 0, 8, 0),
        (3, 'running', 2, 0, -1, 0),
        (4, 'queued', 2, 0, -1, 0),
        (5, 'errors', 2, 0, -1, 0),
        (6, 'last_error', 14, 0, -1, 0),
        (7, 'memory_bytes', 3, 0, -1, 0),
        (8, 'storage_bytes', 3, 0, -1, 0),
    )),
    ('ChildrenStatus', 29, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'children', 16, 2, 35, 0),
    )),
    ('StreamOpen', 32, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'stream_id', 2, 0, -1, 0),
        (3, 'kind', 7, 0, 9, 0),
        (4, 'direction', 7, 0, 10, 0),
        (5, 'content_type', 14, 0, -1, 0),
        (6, 'params', 16, 3, (14, 17, -1), 0),
        (7, 'source', 14, 0, -1, 0),
        (8, 'credit', 2, 0, -1, 0),
    )),
    ('StreamData', 33, (
        (1, 'stream_id', 2, 0, -1, 0),
        (2, 'seq', 2, 0, -1, 0),
        (3, 'offset', 3, 0, -1, 0),
        (4, 'data', 15, 0, -1, 0),
        (5, 'timestamp_us', 3, 0, -1, 0),
    )),
    ('StreamCredit', 34, (
        (1, 'stream_id', 2, 0, -1, 0),
        (2, 'bytes', 2, 0, -1, 0),
        (3, 'chunks', 2, 0, -1, 0),
    )),
    ('StreamClose', 35, (
        (1, 'stream_id', 2, 0, -1, 0),
        (2, 'status', 7, 0, 1, 0),
        (3, 'message', 14, 0, -1, 0),
        (4, 'total_bytes', 3, 0, -1, 0),
    )),
    ('OtaManifest', 0, (
        (1, 'board', 14, 0, -1, 0),
        (2, 'version', 14, 0, -1, 0),
        (3, 'counter', 3, 0, -1, 0),
        (4, 'size', 3, 0, -1, 0),
        (5, 'sha256', 15, 0, -1, 0),
        (6, 'kind', 14, 0, -1, 0),
    )),
    ('OtaBegin', 40, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'manifest', 15, 0, -1, 0),
        (3, 'signature', 15, 0, -1, 0),
        (4, 'key_id', 14, 0, -1, 0),
    )),
    ('OtaChunk', 41, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'offset', 3, 0, -1, 0),
        (3, 'data', 15, 0, -1, 0),
    )),
    ('OtaCommit', 42, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'reboot', 6, 0, -1, 0),
    )),
    ('OtaAbort', 43, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'reason', 14, 0, -1, 0),
    )),
    ('OtaStatusRequest', 44, (
        (1, 'request_id', 2, 0, -1, 0),
    )),
    ('OtaStatus', 45, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'status', 7, 0, 1, 0),
        (3, 'state', 7, 0, 11, 0),
        (4, 'offset', 3, 0, -1, 0),
        (5, 'version', 14, 0, -1, 0),
        (6, 'pending_version', 14, 0, -1, 0),
        (7, 'message', 14, 0, -1, 0),
        (8, 'credit', 2, 0, -1, 0),
        (9, 'failed_boots', 2, 0, -1, 0),
    )),
    ('OtaRollback', 46, (
        (1, 'request_id', 2, 0, -1, 0),
    )),
    ('SettingsGet', 48, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'keys', 14, 2, -1, 0),
    )),
    ('SettingsSet', 49, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'values', 16, 3, (14, 17, -1), 0),
    )),
    ('SettingsResult', 50, (
        (1, 'request_id', 2, 0, -1, 0),
        (2, 'status', 7, 0, 1, 0),
        (3, 'values', 16, 3, (14, 17, -1), 0),
        (4, 'message', 14, 0, -1, 0),
    )),
)

ENUMS = (
    ('MessageType', (('MESSAGE_TYPE_UNSPECIFIED', 0), ('HELLO', 1), ('AUTH_CHALLENGE', 2), ('AUTH_RESPONSE', 3), ('AUTH_RESULT', 4), ('CAPABILITIES_REQUEST', 5), ('CAPABILITIES', 6), ('CAPABILITY_CHANGED', 7), ('PING', 8), ('PONG', 9), ('ERROR', 10), ('ACK', 11), ('GOODBYE', 12), ('LOG_RECORD', 13), ('TOOL_CALL', 16), ('TOOL_RESULT', 17), ('CANCEL_CALL', 18), ('SCRIPT_REGISTER', 24), ('SCRIPT_UNREGISTER', 25), ('SCRIPT_LIST', 26), ('SCRIPT_LIST_RESULT', 27), ('CHILDREN_STATUS_REQUEST', 28), ('CHILDREN_STATUS', 29), ('STREAM_OPEN', 32), ('STREAM_DATA', 33), ('STREAM_CREDIT', 34), ('STREAM_CLOSE', 35), ('OTA_BEGIN', 40), ('OTA_CHUNK', 41), ('OTA_COMMIT', 42), ('OTA_ABORT', 43), ('OTA_STATUS_REQUEST', 44), ('OTA_STATUS', 45), ('OTA_ROLLBACK', 46), ('SETTINGS_GET', 48), ('SETTINGS_SET', 49), ('SETTINGS_RESULT', 50))),
    ('Status', (('OK', 0), ('CANCELLED', 1), ('UNKNOWN', 2), ('INVALID_ARGUMENT', 3), ('DEADLINE_EXCEEDED', 4), ('NOT_FOUND', 5), ('ALREADY_EXISTS', 6), ('PERMISSION_DENIED', 7), ('RESOURCE_EXHAUSTED', 8), ('FAILED_PRECONDITION', 9), ('ABORTED', 10), ('OUT_OF_RANGE', 11), ('UNIMPLEMENTED', 12), ('INTERNAL', 13), ('UNAVAILABLE', 14), ('DATA_LOSS', 15), ('UNAUTHENTICATED', 16))),
    ('NullValue', (('NULL_VALUE', 0),)),
    ('Role', (('ROLE_UNSPECIFIED', 0), ('ROLE_DEVICE', 1), ('ROLE_CONTROLLER', 2), ('ROLE_HUB', 3))),
    ('DeviceType', (('DEVICE_TYPE_UNSPECIFIED', 0), ('ESP32', 1), ('ESP8266', 2), ('PICO_W', 3), ('LINUX', 4))),
    ('LogLevel', (('LOG_LEVEL_UNSPECIFIED', 0), ('LOG_DEBUG', 1), ('LOG_INFO', 2), ('LOG_WARNING', 3), ('LOG_ERROR', 4), ('LOG_CRITICAL', 5))),
    ('ValueType', (('TYPE_ANY', 0), ('TYPE_NULL', 1), ('TYPE_BOOL', 2), ('TYPE_INT', 3), ('TYPE_FLOAT', 4), ('TYPE_STRING', 5), ('TYPE_BYTES', 6), ('TYPE_LIST', 7), ('TYPE_MAP', 8))),
    ('ToolKind', (('TOOL_KIND_UNSPECIFIED', 0), ('TOOL_BUILTIN', 1), ('TOOL_CONFIGURED', 2), ('TOOL_SCRIPT', 3), ('TOOL_STREAM_SCRIPT', 4))),
    ('ChildState', (('CHILD_STATE_UNSPECIFIED', 0), ('CHILD_IDLE', 1), ('CHILD_BUSY', 2), ('CHILD_ERROR', 3), ('CHILD_DISABLED', 4))),
    ('StreamKind', (('STREAM_KIND_UNSPECIFIED', 0), ('STREAM_RAW', 1), ('STREAM_SENSOR', 2), ('STREAM_LOG', 3), ('STREAM_FILE', 4), ('STREAM_AUDIO', 5), ('STREAM_VIDEO', 6))),
    ('Direction', (('DIRECTION_UNSPECIFIED', 0), ('DIRECTION_IN', 1), ('DIRECTION_OUT', 2), ('DIRECTION_BOTH', 3))),
    ('OtaState', (('OTA_STATE_UNSPECIFIED', 0), ('OTA_IDLE', 1), ('OTA_RECEIVING', 2), ('OTA_VERIFYING', 3), ('OTA_READY', 4), ('OTA_PENDING_VALIDATION', 5), ('OTA_VALID', 6), ('OTA_ROLLED_BACK', 7), ('OTA_FAILED', 8))),
)

HELLO = const(1)
AUTH_CHALLENGE = const(2)
AUTH_RESPONSE = const(3)
AUTH_RESULT = const(4)
CAPABILITIES_REQUEST = const(5)
CAPABILITIES = const(6)
CAPABILITY_CHANGED = const(7)
PING = const(8)
PONG = const(9)
ERROR = const(10)
ACK = const(11)
GOODBYE = const(12)
LOG_RECORD = const(13)
TOOL_CALL = const(16)
TOOL_RESULT = const(17)
CANCEL_CALL = const(18)
SCRIPT_REGISTER = const(24)
SCRIPT_UNREGISTER = const(25)
SCRIPT_LIST = const(26)
SCRIPT_LIST_RESULT = const(27)
CHILDREN_STATUS_REQUEST = const(28)
CHILDREN_STATUS = const(29)
STREAM_OPEN = const(32)
STREAM_DATA = const(33)
STREAM_CREDIT = const(34)
STREAM_CLOSE = const(35)
OTA_BEGIN = const(40)
OTA_CHUNK = const(41)
OTA_COMMIT = const(42)
OTA_ABORT = const(43)
OTA_STATUS_REQUEST = const(44)
OTA_STATUS = const(45)
OTA_ROLLBACK = const(46)
SETTINGS_GET = const(48)
SETTINGS_SET = const(49)
SETTINGS_RESULT = const(50)

OK = const(0)
CANCELLED = const(1)
UNKNOWN = const(2)
INVALID_ARGUMENT = const(3)
DEADLINE_EXCEEDED = const(4)
NOT_FOUND = const(5)
ALREADY_EXISTS = const(6)
PERMISSION_DENIED = const(7)
RESOURCE_EXHAUSTED = const(8)
FAILED_PRECONDITION = const(9)
ABORTED = const(10)
OUT_OF_RANGE = const(11)
UNIMPLEMENTED = const(12)
INTERNAL = const(13)
UNAVAILABLE = const(14)
DATA_LOSS = const(15)
UNAUTHENTICATED = const(16)
