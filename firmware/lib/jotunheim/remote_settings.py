"""SettingsGet and SettingsSet (protocol/SPEC.md 1.13), loaded only while one is answered."""
from jotunheim import configfile, port

OK = 0
INVALID_ARGUMENT = 3
NOT_FOUND = 5
UNAVAILABLE = 14


def answer(agent, name, request):
    settings = port.module("settings")
    if name == "SettingsGet":
        return _get(agent, settings, request)
    return _set(agent, settings, request)


def _get(agent, settings, request):
    public = settings.public(agent.settings)
    keys = request["keys"] or list(public)
    answer = {"request_id": request["request_id"], "status": OK, "values": {}}
    for key in keys:
        if key not in public:
            return {"request_id": request["request_id"], "status": NOT_FOUND,
                    "message": "no setting %s" % key}
        answer["values"][key] = public[key]
    return answer


def _set(agent, settings, request):
    values = request["values"]
    try:
        new = settings.check(values, agent.profile(), agent.settings)
        public = settings.public(new)
        if not request["dry_run"]:
            agent.settings_file.save(new)
    except configfile.ConfigError as e:
        return {"request_id": request["request_id"], "status": INVALID_ARGUMENT,
                "message": str(e)}
    except OSError as e:
        return {"request_id": request["request_id"], "status": UNAVAILABLE,
                "message": "settings.json cannot be written: %s" % e}
    if not request["dry_run"]:
        try:
            agent.apply_settings(new)
        except MemoryError:  # saved, not applied: the reload check applies the file soon
            agent.settings_file.forget()
            raise
    return {"request_id": request["request_id"], "status": OK,
            "values": dict((key, public[key]) for key in values)}
