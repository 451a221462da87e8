# Runs first at every boot. Kept small: the agent's modules load in main.py.
#
# Over-the-air updates (jotunheim.ota): /ota/state.json names the active slot, whose lib/
# goes first on sys.path (/lib is the factory image). An image pending validation gets
# FAILED_BOOT_LIMIT boots to validate, the next boot returns to the previous image; one
# whose agent does not even load goes back at once. The state file is only ever replaced
# whole (a temporary file, then a rename).
import gc
import sys

FAILED_BOOT_LIMIT = 3


def _ota():
    import json
    import os
    try:
        with open("/ota/state.json") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return

    def save():
        with open("/ota/state.json.tmp", "w") as f:
            f.write(json.dumps(state))
        os.rename("/ota/state.json.tmp", "/ota/state.json")

    def back(why):
        state.update(active=state.get("previous") or "", previous="", pending=0,
                     last="rolled_back", failed_boots=state.get("tries", 0), tries=0,
                     note=why)
        save()

    lib = [p for p in sys.path if p.endswith("/lib") and not p.endswith("/rom/lib")]
    base = (lib[0][:-4] if lib else "") + "/ota/"
    if state.get("pending"):
        if state.get("tries", 0) >= FAILED_BOOT_LIMIT:
            back("rolled back after %d boots without validation" % state["tries"])
        else:
            state["tries"] = state.get("tries", 0) + 1
            save()
    if state.get("active"):
        sys.path.insert(0, base + state["active"] + "/lib")
    if state.get("pending"):
        try:
            import jotunheim.agent  # noqa: F401 - the new image's code must at least load
        except Exception as e:  # noqa: BLE001 - any failure: the image cannot run
            for name in list(sys.modules):
                if name.split(".")[0] in ("jotunheim", "protocol"):
                    del sys.modules[name]
            sys.path.pop(0)
            back("the image does not load: %s: %s" % (type(e).__name__, e))
            if state["active"]:
                sys.path.insert(0, base + state["active"] + "/lib")


_ota()
del _ota
gc.collect()
