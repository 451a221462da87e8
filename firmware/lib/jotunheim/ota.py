"""Over-the-air updates, the part that stays in RAM (protocol/SPEC.md 1.12).

The agent calls install() at start: it routes the Ota* requests to jotunheim.ota_update
(loaded on the first request, dropped when no transfer is open) and, when the running
image still awaits validation, validates it once a controller can talk to it.
boot.py has already chosen the image: it reads STATE (written by ota_update, always
atomically), counts the boots of an image pending validation, rolls back past the limit
and puts the active slot's lib/ first on sys.path. The factory image is /lib."""
import asyncio
import json
import os

from jotunheim import port

STATE = "ota/state.json"
KEYS = "ota_keys.json"
VALIDATE_AFTER_MS = 1000
INTERNAL = 13
FAILED = 8  # OtaState OTA_FAILED
REQUESTS = ("OtaBegin", "OtaChunk", "OtaCommit", "OtaAbort", "OtaStatusRequest",
            "OtaRollback")


def read_state(root=""):
    """The update state file as a dict ({} when there is none or it does not read)."""
    try:
        with open(root + STATE) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    return state if type(state) is dict else {}


def running_version(root, factory):
    """The version of the image running now: the active slot's, else the factory's."""
    state = read_state(root)
    slot = state.get("active")
    if slot:
        return (state.get("slots") or {}).get(slot, {}).get("version") or factory
    return factory


def install(agent):
    """Serve the Ota* requests where updates are enabled: the owner's public keys were
    deployed (KEYS), or an update was installed before. Elsewhere they stay unanswered
    requests (UNIMPLEMENTED) and features.ota_method stays empty."""
    state = read_state(agent.root)
    try:
        os.stat(agent.root + KEYS)
    except OSError:
        if not state:
            port.drop("ota")  # no updates here: not even this module stays in RAM
            return
    agent.ota_running = state.get("active") or ""  # the slot boot.py put on sys.path
    agent.ota = None                                # the Updater while one is loaded
    agent.ota_failure = None                        # why the last update was refused
    # an image pending validation proves itself once a controller can talk to it: at its
    # first update request, or VALIDATE_AFTER_MS into a session that stays up
    agent.ota_pending = bool(state.get("pending") and agent.ota_running)
    agent.features["ota_method"] = "ab-bundle"
    for request in REQUESTS:
        agent.handlers[request] = _handler(agent, request)
    if agent.ota_pending:
        agent.on_ready.append(lambda session: asyncio.create_task(_later(agent, session)))


async def _later(agent, session):
    await port.sleep_ms(VALIDATE_AFTER_MS)
    if session.ready:
        validate(agent, session)


def validate(agent, session):
    """Self-test the pending image and mark it valid, or restart into the next try."""
    if not agent.ota_pending:
        return
    agent.ota_pending = False
    try:
        updater(agent).validate(session)
    except Exception as e:  # noqa: BLE001 - not valid: boot.py counts the boot
        agent.log("validation failed: %s: %s" % (type(e).__name__, e), "error")
        agent.reboot_soon(300)
    finally:
        release(agent)


def updater(agent):
    """The agent's jotunheim.ota_update.Updater, loaded on first use."""
    if agent.ota is None:
        agent.ota = port.module("ota_update").Updater(agent)
    return agent.ota


def release(agent):
    """Let the update code go when nothing is in progress (a transfer keeps it)."""
    if agent.ota is not None and not agent.ota.busy():
        agent.ota = None
        port.drop("ota_update")


def _handler(agent, request):
    def handle(session, fields):
        if agent.ota_pending:
            validate(agent, session)
        try:
            answer = updater(agent).serve(request, fields)
        except Exception as e:  # noqa: BLE001 - out of memory, say: answer, keep running
            answer = {"request_id": fields.get("request_id", 0), "status": INTERNAL,
                      "state": FAILED, "message": "%s: %s" % (type(e).__name__, e)}
        finally:
            release(agent)
        session.send("OtaStatus", answer)
    return handle
