# Generated from jotunheim.proto by tools/jotunheim_host/schemagen.py. Do not edit.
# Enum value names, and constants for message types and status codes. Tuples: see
# schema.py.
# ENUM_VALUES[i] alternates value names and numbers for enum ENUM_NAMES[i].
from ._compat import const

ENUM_NAMES = (
    'MessageType', 'Status', 'NullValue', 'Role', 'DeviceType', 'LogLevel', 'ValueType',
    'ToolKind', 'ChildState', 'StreamKind', 'Direction', 'OtaState',
)

ENUM_VALUES = (
    (
        'MESSAGE_TYPE_UNSPECIFIED', 0, 'HELLO', 1, 'AUTH_CHALLENGE', 2, 'AUTH_RESPONSE',
        3, 'AUTH_RESULT', 4, 'CAPABILITIES_REQUEST', 5, 'CAPABILITIES', 6,
        'CAPABILITY_CHANGED', 7, 'PING', 8, 'PONG', 9, 'ERROR', 10, 'ACK', 11,
        'GOODBYE', 12, 'LOG_RECORD', 13, 'COMPRESSED', 14, 'TOOL_CALL', 16,
        'TOOL_RESULT', 17, 'CANCEL_CALL', 18, 'SCRIPT_REGISTER', 24,
        'SCRIPT_UNREGISTER', 25, 'SCRIPT_LIST', 26, 'SCRIPT_LIST_RESULT', 27,
        'CHILDREN_STATUS_REQUEST', 28, 'CHILDREN_STATUS', 29, 'STREAM_OPEN', 32,
        'STREAM_DATA', 33, 'STREAM_CREDIT', 34, 'STREAM_CLOSE', 35, 'OTA_BEGIN', 40,
        'OTA_CHUNK', 41, 'OTA_COMMIT', 42, 'OTA_ABORT', 43, 'OTA_STATUS_REQUEST', 44,
        'OTA_STATUS', 45, 'OTA_ROLLBACK', 46, 'SETTINGS_GET', 48, 'SETTINGS_SET', 49,
        'SETTINGS_RESULT', 50,
    ),
    (
        'OK', 0, 'CANCELLED', 1, 'UNKNOWN', 2, 'INVALID_ARGUMENT', 3,
        'DEADLINE_EXCEEDED', 4, 'NOT_FOUND', 5, 'ALREADY_EXISTS', 6,
        'PERMISSION_DENIED', 7, 'RESOURCE_EXHAUSTED', 8, 'FAILED_PRECONDITION', 9,
        'ABORTED', 10, 'OUT_OF_RANGE', 11, 'UNIMPLEMENTED', 12, 'INTERNAL', 13,
        'UNAVAILABLE', 14, 'DATA_LOSS', 15, 'UNAUTHENTICATED', 16,
    ),
    (
        'NULL_VALUE', 0,
    ),
    (
        'ROLE_UNSPECIFIED', 0, 'ROLE_DEVICE', 1, 'ROLE_CONTROLLER', 2, 'ROLE_HUB', 3,
    ),
    (
        'DEVICE_TYPE_UNSPECIFIED', 0, 'ESP32', 1, 'ESP8266', 2, 'PICO_W', 3, 'LINUX', 4,
    ),
    (
        'LOG_LEVEL_UNSPECIFIED', 0, 'LOG_DEBUG', 1, 'LOG_INFO', 2, 'LOG_WARNING', 3,
        'LOG_ERROR', 4, 'LOG_CRITICAL', 5,
    ),
    (
        'TYPE_ANY', 0, 'TYPE_NULL', 1, 'TYPE_BOOL', 2, 'TYPE_INT', 3, 'TYPE_FLOAT', 4,
        'TYPE_STRING', 5, 'TYPE_BYTES', 6, 'TYPE_LIST', 7, 'TYPE_MAP', 8,
    ),
    (
        'TOOL_KIND_UNSPECIFIED', 0, 'TOOL_BUILTIN', 1, 'TOOL_CONFIGURED', 2,
        'TOOL_SCRIPT', 3, 'TOOL_STREAM_SCRIPT', 4,
    ),
    (
        'CHILD_STATE_UNSPECIFIED', 0, 'CHILD_IDLE', 1, 'CHILD_BUSY', 2, 'CHILD_ERROR',
        3, 'CHILD_DISABLED', 4,
    ),
    (
        'STREAM_KIND_UNSPECIFIED', 0, 'STREAM_RAW', 1, 'STREAM_SENSOR', 2, 'STREAM_LOG',
        3, 'STREAM_FILE', 4, 'STREAM_AUDIO', 5, 'STREAM_VIDEO', 6,
    ),
    (
        'DIRECTION_UNSPECIFIED', 0, 'DIRECTION_IN', 1, 'DIRECTION_OUT', 2,
        'DIRECTION_BOTH', 3,
    ),
    (
        'OTA_STATE_UNSPECIFIED', 0, 'OTA_IDLE', 1, 'OTA_RECEIVING', 2, 'OTA_VERIFYING',
        3, 'OTA_READY', 4, 'OTA_PENDING_VALIDATION', 5, 'OTA_VALID', 6,
        'OTA_ROLLED_BACK', 7, 'OTA_FAILED', 8,
    ),
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
COMPRESSED = const(14)
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
