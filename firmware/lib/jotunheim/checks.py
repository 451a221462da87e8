"""Text helpers the checks of settings, tools.json and call arguments share: what an error
message needs (quoting a value, naming its JSON type, suggesting the name that was meant)
and JSON written for people. Loaded only while something is checked or saved."""
import json


def dumps(value, indent=""):
    """JSON text for people: keys sorted, one member or list item of a container per line
    (a list of plain values stays on one line)."""
    inner = indent + "  "
    if type(value) is dict and value:
        items = [inner + json.dumps(key) + ": " + dumps(value[key], inner)
                 for key in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if type(value) is list and value and [item for item in value if type(item) in (dict, list)]:
        items = [inner + dumps(item, inner) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value)


def chars_ok(text, extra):
    """True when every character of text is an ASCII letter or digit, or one of extra."""
    for c in text:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in extra):
            return False
    return True


def json_type(value):
    """The JSON name of value's type: null, boolean, number, string, array, object."""
    t = type(value)
    if value is None:
        return "null"
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return t.__name__


def show(value):
    """value as an error message quotes it: 'text', 3, true, null, an array."""
    t = type(value)
    if t is str:
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float:
        return str(value)
    if value is None:
        return "null"
    name = json_type(value)
    return ("an " if name[0] in "aeiou" else "a ") + name


def suggest(word, known):
    """The known name closest to a mistyped word, or None when none is close."""
    if type(word) is not str:
        return None
    lower = word.lower()
    best, best_distance = None, max(2, len(word) // 4) + 1
    for name in known:
        other = name.lower()
        if other.endswith("." + lower):
            distance = 0  # the section left out
        elif min(len(other), len(lower)) >= 3 and (lower.startswith(other)
                                                   or other.startswith(lower)):
            distance = 1  # "integer" for "int"
        else:
            distance = _distance(lower, other)
        if distance < best_distance:
            best, best_distance = name, distance
    return best


def _distance(a, b):
    """Levenshtein distance (for error messages only)."""
    row = list(range(len(b) + 1))
    for i in range(len(a)):
        previous, row[0] = row[0], i + 1
        for j in range(len(b)):
            current = row[j + 1]
            row[j + 1] = min(current + 1, row[j] + 1, previous + (a[i] != b[j]))
            previous = current
    return row[-1]
