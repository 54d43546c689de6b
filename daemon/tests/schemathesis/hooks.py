"""Schemathesis hooks of daemon/tests/schemathesis.rs: keep generated requests
inside the throwaway environment.

A valid generated PUT reaches the real engine as root, so everything in a
body that can name something on the host is rewritten, right before the
request is sent (`before_call` runs for every request of every phase, and
schemathesis re-checks afterwards whether the case is still valid or not):

- a `device` path becomes one of the sandbox's disk images or a missing file
  in the sandbox (never a host node such as /dev/sda, nor a relative path);
- a `loop_backing` file becomes a missing file in the sandbox;
- a `wwid` becomes one no real LUN has (`naa.0gmtest…`), unless it is one the
  engine refuses before looking (empty, or with a '/');
- an iSCSI presentation's target IQN becomes one the engine refuses before
  any iscsiadm call (no login to a generated portal, no node record under
  /etc/iscsi), and its portals a name that never resolves; FC target WWPNs
  become strings that are no WWPN (refused before any scan);
- a wait (`timeout`) of 2..900 s becomes 1 s (above 900, negative data, the
  engine refuses at once, so those are kept);
- a `target` starting with '/' becomes a directory under the sandbox.

The sandbox is $GOLDMOUNT_SANDBOX; without it the hooks refuse to run.
Every call is logged to $GOLDMOUNT_SANDBOX/calls.log (method, path template,
status), and every volume PUT's answer to put.log (status, positive/negative, the
start of the body), so the test can say what reached the engine.
"""

import os
import zlib

import schemathesis

SANDBOX = os.environ.get("GOLDMOUNT_SANDBOX", "")
if not SANDBOX.startswith("/") or not os.path.isdir(SANDBOX):
    raise RuntimeError(
        "GOLDMOUNT_SANDBOX must name the throwaway directory of daemon/tests/schemathesis.rs"
    )
IMAGES = sorted(
    os.path.join(SANDBOX, "images", n)
    for n in os.listdir(os.path.join(SANDBOX, "images"))
    if n.endswith(".img")
)
WAIT_CAP = 1
REFUSED_IQN = "sandbox-refuses-iscsi"
# `.invalid` never resolves (RFC 2606): a second fence behind REFUSED_IQN.
SANDBOX_PORTAL = "portal.sandbox.invalid:1"
ENGINE_MAX_WAIT = 900


def _tag(value):
    return "%08x" % zlib.crc32(repr(value).encode("utf-8", "surrogatepass"))


def _device_path(path):
    h = zlib.crc32(path.encode("utf-8", "surrogatepass"))
    # Half of the generated paths name a real image (a mount that can succeed).
    if IMAGES and h % 2 == 0:
        return IMAGES[(h // 2) % len(IMAGES)]
    return os.path.join(SANDBOX, "missing", _tag(path))


def _cap_wait(src):
    t = src.get("timeout")
    if isinstance(t, int) and not isinstance(t, bool) and WAIT_CAP < t <= ENGINE_MAX_WAIT:
        src["timeout"] = WAIT_CAP


def _confine_source(src):
    if not isinstance(src, dict):
        return
    _cap_wait(src)
    kind = src.get("kind")
    if kind == "device" and isinstance(src.get("path"), str):
        src["path"] = _device_path(src["path"])
    elif kind == "loop_backing" and isinstance(src.get("file"), str):
        src["file"] = os.path.join(SANDBOX, "missing", "backing-" + _tag(src["file"]))
    elif kind == "wwid":
        w = src.get("wwid")
        if isinstance(w, str) and w.strip() and "/" not in w:
            src["wwid"] = "naa.0gmtest" + _tag(w)
    elif kind == "iscsi":
        p = src.get("presentation")
        if isinstance(p, dict):
            # The engine checks the IQN first of all (before iscsiadm is
            # run): one that does not start with iqn./eui./naa. is refused.
            # A portal it would accept includes any host name, so the
            # portals alone are not enough.
            if isinstance(p.get("target_iqn"), str):
                p["target_iqn"] = REFUSED_IQN
            if isinstance(p.get("portals"), list):
                p["portals"] = [SANDBOX_PORTAL if isinstance(v, str) else v for v in p["portals"]]
    elif kind == "fc":
        p = src.get("presentation")
        # Not a WWPN: the engine's scan plan refuses it before any scan.
        if isinstance(p, dict) and isinstance(p.get("target_wwpns"), list):
            p["target_wwpns"] = [
                "not-a-wwpn-" + _tag(v) if isinstance(v, str) else v for v in p["target_wwpns"]
            ]


def _confine_body(body):
    if not isinstance(body, dict):
        return
    sources = body.get("sources")
    if isinstance(sources, list):
        for s in sources:
            _confine_source(s)
    target = body.get("target")
    if isinstance(target, str) and target.startswith("/"):
        body["target"] = os.path.join(SANDBOX, "targets", _tag(target))


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() == "PUT":
        _confine_body(case.body)


@schemathesis.hook
def after_call(context, case, response):
    with open(os.path.join(SANDBOX, "calls.log"), "a", encoding="utf-8") as f:
        f.write("%s %s %s\n" % (case.method.upper(), case.operation.path, response.status_code))
    # put.log: the volume PUTs only (what reached the engine's mount).
    if case.method.upper() == "PUT" and case.operation.path == "/v1/volumes/{name}":
        mode = case.meta.generation.mode.value if case.meta else "?"
        with open(os.path.join(SANDBOX, "put.log"), "a", encoding="utf-8") as f:
            f.write("%s %s %s\n" % (response.status_code, mode, response.text[:200].replace("\n", " ")))
