#!/usr/bin/env python3
"""Checks goldmount's Kubernetes manifests without a cluster.

Loads every YAML file under this directory (examples included) and checks
what a cluster would only show at run time: the CSIDriver's fields, the
node plugin's host access and mount propagation, pinned images, that
StorageClasses name this driver, that every ServiceAccount, role and
StorageClass referred to exists, that the controller's sidecars have the
rights they need, and that kustomization.yaml lists every manifest.

    python3 deploy/kubernetes/check.py [DIR]

Prints each problem and exits 1; exits 0 with a summary when there is none.
Needs PyYAML (Debian: apt-get install python3-yaml); stdlib otherwise.
"""

import json
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    print("check.py: PyYAML is missing: apt-get install python3-yaml (or pip install pyyaml)", file=sys.stderr)
    sys.exit(2)

DRIVER = "goldmount.csi.dev"
NAMESPACE = "goldmount"
KUBELET_DIR = "/var/lib/kubelet"
# Present but deliberately not in kustomization.yaml.
NOT_LISTED = {"appliance-secret.example.yaml"}
EXAMPLES_DIR = "examples"
SECRET_TEMPLATE = "appliance-secret.example.yaml"
SC_PARAMETERS = {"gold", "pointInTime", "profile", "readOnly"}
CLUSTER_SCOPED = {
    "Namespace", "CSIDriver", "StorageClass", "ClusterRole", "ClusterRoleBinding",
    "PersistentVolume", "VolumeSnapshotClass",
}
POD_TEMPLATE_KINDS = {"DaemonSet", "Deployment", "StatefulSet", "ReplicaSet", "Job"}
# (apiGroup, resource, verb) the controller's ServiceAccount must be granted:
# the external-provisioner's and external-attacher's needs for a driver with
# CREATE_DELETE_VOLUME, PUBLISH_UNPUBLISH_VOLUME, snapshot dataSources and
# leader election.
REQUIRED_CONTROLLER_RIGHTS = [
    *[("", "persistentvolumes", v) for v in ("get", "list", "watch", "create", "delete", "patch")],
    *[("", "persistentvolumeclaims", v) for v in ("get", "list", "watch", "update")],
    *[("storage.k8s.io", "storageclasses", v) for v in ("get", "list", "watch")],
    *[("", "events", v) for v in ("list", "watch", "create", "update", "patch")],
    *[("storage.k8s.io", "csinodes", v) for v in ("get", "list", "watch")],
    *[("", "nodes", v) for v in ("get", "list", "watch")],
    *[("storage.k8s.io", "volumeattachments", v) for v in ("get", "list", "watch", "patch")],
    ("storage.k8s.io", "volumeattachments/status", "patch"),
    *[("snapshot.storage.k8s.io", r, v) for r in ("volumesnapshots", "volumesnapshotcontents") for v in ("get", "list")],
]
REQUIRED_LEASE_VERBS = ("get", "watch", "list", "delete", "update", "create")


class Check:
    """Collects problems; each names the file and object it is about."""

    def __init__(self, root):
        self.root = root
        self.problems = []
        self.objects = []  # (relative path, document)

    def fail(self, where, msg):
        self.problems.append(f"{where}: {msg}")

    def load(self):
        for path in sorted(self.root.rglob("*.y*ml")):
            rel = path.relative_to(self.root).as_posix()
            if rel == "kustomization.yaml":  # kustomize's input, not an object
                continue
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except yaml.YAMLError as e:
                self.fail(rel, f"not valid YAML: {e}")
                continue
            for d in docs:
                if d is None:
                    continue
                if not isinstance(d, dict) or "kind" not in d:
                    self.fail(rel, "a document without 'kind': expected a Kubernetes object")
                    continue
                self.objects.append((rel, d))

    def of_kind(self, kind, manifests_only=False):
        return [(f, o) for f, o in self.objects
                if o.get("kind") == kind and not (manifests_only and is_example(f))]


def is_example(rel):
    return rel.startswith(EXAMPLES_DIR + "/")


def name_of(o):
    return (o.get("metadata") or {}).get("name", "<no name>")


def ns_of(o):
    return (o.get("metadata") or {}).get("namespace")


def where(f, o):
    return f"{f} {o.get('kind')}/{name_of(o)}"


def pod_spec(o):
    if o.get("kind") == "Pod":
        return o.get("spec") or {}
    if o.get("kind") in POD_TEMPLATE_KINDS:
        return ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def containers(spec):
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


def image_name(image):
    """`registry/path/name:tag@digest` -> `name`."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def is_goldmount_image(image):
    return image.split(":")[0].split("@")[0].startswith("goldmount/")


def check_kustomization(c):
    kfile = c.root / "kustomization.yaml"
    if not kfile.exists():
        c.fail("kustomization.yaml", "missing")
        return
    k = yaml.safe_load(kfile.read_text()) or {}
    listed = k.get("resources") or []
    present = {p.relative_to(c.root).as_posix() for p in c.root.rglob("*.y*ml")}
    expected = {p for p in present
                if p != "kustomization.yaml" and p not in NOT_LISTED and not is_example(p)}
    for r in listed:
        if r not in present:
            c.fail("kustomization.yaml", f"lists {r}, which does not exist")
        if r in NOT_LISTED or is_example(r):
            c.fail("kustomization.yaml", f"lists {r}, which must stay out (credentials template or example workload)")
    for p in sorted(expected - set(listed)):
        c.fail("kustomization.yaml", f"does not list {p}: `kubectl apply -k` would leave it out")
    if len(listed) != len(set(listed)):
        c.fail("kustomization.yaml", "lists a file twice")


def check_csidriver(c):
    drivers = c.of_kind("CSIDriver")
    if len(drivers) != 1:
        c.fail("manifests", f"expected one CSIDriver, found {len(drivers)}")
        return None
    f, d = drivers[0]
    w = where(f, d)
    if name_of(d) != DRIVER:
        c.fail(w, f"name must be {DRIVER} (what GetPluginInfo answers), found {name_of(d)}")
    spec = d.get("spec") or {}
    want = {
        "attachRequired": True,
        "podInfoOnMount": False,
        "fsGroupPolicy": "None",
        "volumeLifecycleModes": ["Persistent"],
        "requiresRepublish": False,
    }
    for key, value in want.items():
        if spec.get(key) != value:
            c.fail(w, f"spec.{key} must be {json.dumps(value)}, found {json.dumps(spec.get(key))}")
    return name_of(d)


def check_storageclasses(c, driver):
    names = set()
    for f, sc in c.of_kind("StorageClass"):
        w = where(f, sc)
        names.add(name_of(sc))
        if sc.get("provisioner") != driver:
            c.fail(w, f"provisioner must be the CSIDriver's name {driver!r}, found {sc.get('provisioner')!r}")
        params = sc.get("parameters") or {}
        for k, v in params.items():
            if k not in SC_PARAMETERS and not k.startswith("csi.storage.k8s.io/"):
                c.fail(w, f"unknown parameter {k!r}: the driver refuses it (expected one of {sorted(SC_PARAMETERS)})")
            if not isinstance(v, str):
                c.fail(w, f"parameter {k} is {v!r} ({type(v).__name__}): StorageClass parameters are strings, quote it")
        if not params.get("gold"):
            c.fail(w, "parameters.gold is missing: the gold copy to clone")
        if "readOnly" in params and params["readOnly"] not in ("true", "false"):
            c.fail(w, f"parameters.readOnly must be \"true\" or \"false\", found {params['readOnly']!r}")
        for key, value in (("volumeBindingMode", "WaitForFirstConsumer"), ("reclaimPolicy", "Delete"),
                           ("allowVolumeExpansion", False)):
            if sc.get(key) != value:
                c.fail(w, f"{key} must be {value!r}, found {sc.get(key)!r}")
    return names


def check_images(c):
    count = 0
    for f, o in c.objects:
        spec = pod_spec(o)
        if spec is None:
            continue
        for ct in containers(spec):
            count += 1
            w = f"{where(f, o)} container {ct.get('name')}"
            image = ct.get("image") or ""
            last = image.rsplit("/", 1)[-1]
            if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
                c.fail(w, f"image {image!r} is not pinned: give a tag other than latest (or a digest)")
            if is_goldmount_image(image) and ct.get("imagePullPolicy") != "IfNotPresent":
                c.fail(w, f"imagePullPolicy must be IfNotPresent for {image} (built locally, in no registry), "
                          f"found {ct.get('imagePullPolicy')!r}")
    return count


def check_volumes(c):
    for f, o in c.objects:
        spec = pod_spec(o)
        if spec is None:
            continue
        volumes = {v.get("name") for v in spec.get("volumes") or []}
        templates = {(t.get("metadata") or {}).get("name")
                     for t in (o.get("spec") or {}).get("volumeClaimTemplates") or []}
        used = set()
        for ct in containers(spec):
            for m in ct.get("volumeMounts") or []:
                used.add(m.get("name"))
                if m.get("name") not in volumes | templates:
                    c.fail(f"{where(f, o)} container {ct.get('name')}",
                           f"mounts volume {m.get('name')!r}, which the pod does not define")
        for v in sorted(volumes - used):
            c.fail(where(f, o), f"volume {v!r} is defined but mounted by no container")


def node_plugin(c):
    for f, o in c.of_kind("DaemonSet", manifests_only=True):
        spec = pod_spec(o)
        for ct in spec.get("containers") or []:
            if is_goldmount_image(ct.get("image") or ""):
                return f, o, spec, ct
    return None


def host_path_of(spec, volume_name):
    for v in spec.get("volumes") or []:
        if v.get("name") == volume_name:
            return (v.get("hostPath") or {}).get("path")
    return None


def check_node(c, driver):
    found = node_plugin(c)
    if found is None:
        c.fail("manifests", "no DaemonSet runs a goldmount image: the node plugin is missing")
        return
    f, ds, spec, plugin = found
    w = where(f, ds)
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is not True:
            c.fail(w, f"spec.template.spec.{key} must be true (see the comment at the top of the file), "
                      f"found {spec.get(key)!r}")
    if (plugin.get("securityContext") or {}).get("privileged") is not True:
        c.fail(w, f"container {plugin.get('name')} must be privileged")
    args = plugin.get("args") or []
    if not args or args[0] != "node":
        c.fail(w, f"container {plugin.get('name')} must run `goldmount-csi node`, args are {args}")
    if not any(a.startswith("--node-id") or a.startswith("--appliance-url") for a in args):
        c.fail(w, "the node plugin has neither --appliance-url (it registers and uses the appliance's "
                  "name for the host) nor --node-id: it cannot say its node id")
    kubelet = [m for m in plugin.get("volumeMounts") or [] if m.get("mountPath") == KUBELET_DIR]
    if not kubelet:
        c.fail(w, f"the node plugin does not mount {KUBELET_DIR}")
    for m in kubelet:
        if m.get("mountPropagation") != "Bidirectional":
            c.fail(w, f"{KUBELET_DIR} must be mounted with mountPropagation Bidirectional "
                      f"(its mounts must reach kubelet), found {m.get('mountPropagation')!r}")
        if host_path_of(spec, m.get("name")) != KUBELET_DIR:
            c.fail(w, f"the volume mounted at {KUBELET_DIR} must be hostPath {KUBELET_DIR}")
    # The registrar must announce the socket where the plugin listens.
    plugin_dir = f"{KUBELET_DIR}/plugins/{driver}"
    csi_mount = [m for m in plugin.get("volumeMounts") or [] if m.get("mountPath") == "/csi"]
    if not csi_mount or host_path_of(spec, csi_mount[0].get("name")) != plugin_dir:
        c.fail(w, f"the node plugin's /csi must be hostPath {plugin_dir}")
    registrars = [ct for ct in spec.get("containers") or []
                  if image_name(ct.get("image") or "") == "csi-node-driver-registrar"]
    if len(registrars) != 1:
        c.fail(w, f"expected one node-driver-registrar container, found {len(registrars)}")
    else:
        want = f"--kubelet-registration-path={plugin_dir}/csi.sock"
        if want not in (registrars[0].get("args") or []):
            c.fail(w, f"the registrar must have {want}")
    check_liveness_port(c, w, spec, plugin)


def check_liveness_port(c, w, spec, plugin):
    probes = [ct for ct in spec.get("containers") or [] if image_name(ct.get("image") or "") == "livenessprobe"]
    if len(probes) != 1:
        c.fail(w, f"expected one livenessprobe sidecar, found {len(probes)}")
        return
    port = next((a.split("=", 1)[1] for a in probes[0].get("args") or [] if a.startswith("--health-port=")), "9808")
    ports = {p.get("name"): str(p.get("containerPort")) for p in plugin.get("ports") or []}
    if ports.get("healthz") != port:
        c.fail(w, f"the livenessprobe serves on {port} but the plugin's healthz port is {ports.get('healthz')!r}")


def check_controller(c):
    deployments = [(f, o) for f, o in c.of_kind("Deployment", manifests_only=True)
                   if any(is_goldmount_image(ct.get("image") or "") for ct in pod_spec(o).get("containers") or [])]
    if len(deployments) != 1:
        c.fail("manifests", f"expected one Deployment running the goldmount controller, found {len(deployments)}")
        return
    f, d = deployments[0]
    w = where(f, d)
    spec = pod_spec(d)
    if (d.get("spec") or {}).get("replicas") != 1:
        c.fail(w, f"replicas must be 1, found {(d.get('spec') or {}).get('replicas')!r}")
    by_image = {}
    for ct in spec.get("containers") or []:
        by_image[image_name(ct.get("image") or "")] = ct
    for sidecar in ("csi-provisioner", "csi-attacher", "livenessprobe"):
        if sidecar not in by_image:
            c.fail(w, f"no {sidecar} sidecar")
    prov = by_image.get("csi-provisioner") or {}
    for flag in ("--extra-create-metadata", "--feature-gates=Topology=false", "--leader-election"):
        if prov and flag not in (prov.get("args") or []):
            c.fail(w, f"csi-provisioner lacks {flag}")
    att = by_image.get("csi-attacher") or {}
    if att and "--leader-election" not in (att.get("args") or []):
        c.fail(w, "csi-attacher lacks --leader-election")
    plugin = next(ct for ct in spec.get("containers") or [] if is_goldmount_image(ct.get("image") or ""))
    args = plugin.get("args") or []
    if not args or args[0] != "controller":
        c.fail(w, f"container {plugin.get('name')} must run `goldmount-csi controller`, args are {args}")
    check_liveness_port(c, w, spec, plugin)
    # The appliance Secret: mounted, and the template makes the keys used.
    secret_volumes = [v for v in spec.get("volumes") or [] if "secret" in v]
    if not secret_volumes:
        c.fail(w, "the appliance Secret is not mounted")
        return
    template = c.root / SECRET_TEMPLATE
    if not template.exists():
        c.fail(SECRET_TEMPLATE, "missing: the controller's Secret has no template")
        return
    tmpl = yaml.safe_load(template.read_text()) or {}
    keys = set((tmpl.get("stringData") or {}).keys()) | set((tmpl.get("data") or {}).keys())
    for v in secret_volumes:
        s = v["secret"]
        if s.get("secretName") != name_of(tmpl) or ns_of(tmpl) != ns_of(d):
            c.fail(w, f"mounts Secret {s.get('secretName')!r}, but {SECRET_TEMPLATE} makes "
                      f"{ns_of(tmpl)}/{name_of(tmpl)}")
        for item in s.get("items") or []:
            if item.get("key") not in keys:
                c.fail(w, f"mounts key {item.get('key')!r} of the Secret, which {SECRET_TEMPLATE} does not have")
        mounted = {m.get("mountPath") for ct in [plugin] for m in ct.get("volumeMounts") or []
                   if m.get("name") == v.get("name")}
        for a in args:
            for flag in ("--appliance-ca=", "--appliance-token-file="):
                if a.startswith(flag) and not any(a[len(flag):].startswith(p + "/") for p in mounted):
                    c.fail(w, f"{a} is not under the Secret's mount {sorted(mounted)}")


def check_namespaces(c):
    namespaces = {name_of(o) for _, o in c.of_kind("Namespace")}
    if NAMESPACE not in namespaces:
        c.fail("manifests", f"no Namespace {NAMESPACE}")
    for f, o in c.objects:
        if is_example(f) or o.get("kind") in CLUSTER_SCOPED:
            continue
        if ns_of(o) != NAMESPACE:
            c.fail(where(f, o), f"metadata.namespace must be {NAMESPACE}, found {ns_of(o)!r}")


def check_rbac(c):
    sas = {(ns_of(o), name_of(o)) for _, o in c.of_kind("ServiceAccount")}
    cluster_roles = {name_of(o): o for _, o in c.of_kind("ClusterRole")}
    roles = {(ns_of(o), name_of(o)): o for _, o in c.of_kind("Role")}
    for f, o in c.objects:
        spec = pod_spec(o)
        if spec is None or "serviceAccountName" not in spec:
            continue
        ns = ns_of(o) or "default"
        if (ns, spec["serviceAccountName"]) not in sas:
            c.fail(where(f, o), f"runs as ServiceAccount {ns}/{spec['serviceAccountName']}, which no manifest makes")
    grants = {}  # (ns, sa) -> list of (rule, namespace or None for cluster-wide)
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for f, b in c.of_kind(kind):
            w = where(f, b)
            ref = b.get("roleRef") or {}
            if ref.get("apiGroup") != "rbac.authorization.k8s.io":
                c.fail(w, f"roleRef.apiGroup must be rbac.authorization.k8s.io, found {ref.get('apiGroup')!r}")
            role = None
            if ref.get("kind") == "ClusterRole":
                role = cluster_roles.get(ref.get("name"))
            elif ref.get("kind") == "Role" and kind == "RoleBinding":
                role = roles.get((ns_of(b), ref.get("name")))
            if role is None:
                c.fail(w, f"roleRef {ref.get('kind')}/{ref.get('name')} does not exist in the manifests")
            subjects = b.get("subjects") or []
            if not subjects:
                c.fail(w, "has no subjects")
            for s in subjects:
                if s.get("kind") != "ServiceAccount":
                    continue
                key = (s.get("namespace"), s.get("name"))
                if key not in sas:
                    c.fail(w, f"binds ServiceAccount {key[0]}/{key[1]}, which no manifest makes")
                if role is not None:
                    scope = None if kind == "ClusterRoleBinding" else ns_of(b)
                    grants.setdefault(key, []).extend((r, scope) for r in role.get("rules") or [])
    # The controller pod's sidecars need these rights.
    controller = next((pod_spec(o).get("serviceAccountName") for f, o in c.of_kind("Deployment", manifests_only=True)
                       if any(is_goldmount_image(ct.get("image") or "") for ct in pod_spec(o).get("containers") or [])),
                      None)
    if controller is None:
        return
    mine = grants.get((NAMESPACE, controller), [])

    def granted(group, resource, verb, scope_ok):
        for rule, scope in mine:
            if not scope_ok(scope):
                continue
            if (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) \
                    and (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) \
                    and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])):
                return True
        return False

    for group, resource, verb in REQUIRED_CONTROLLER_RIGHTS:
        if not granted(group, resource, verb, lambda s: s is None):
            c.fail("rbac", f"ServiceAccount {NAMESPACE}/{controller} may not {verb} {resource} "
                           f"(group {group or 'core'!r}) cluster-wide: the provisioner/attacher need it")
    for verb in REQUIRED_LEASE_VERBS:
        if not granted("coordination.k8s.io", "leases", verb, lambda s: s in (None, NAMESPACE)):
            c.fail("rbac", f"ServiceAccount {NAMESPACE}/{controller} may not {verb} leases in {NAMESPACE}: "
                           "leader election needs it")


def check_examples(c, storageclasses):
    for f, o in c.objects:
        if not is_example(f):
            continue
        claims = []
        if o.get("kind") == "PersistentVolumeClaim":
            claims.append(o.get("spec") or {})
        for t in (o.get("spec") or {}).get("volumeClaimTemplates") or [] if o.get("kind") == "StatefulSet" else []:
            claims.append(t.get("spec") or {})
        for claim in claims:
            sc = claim.get("storageClassName")
            if sc not in storageclasses:
                c.fail(where(f, o), f"claims StorageClass {sc!r}, which the manifests do not define")


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    c = Check(root)
    c.load()
    check_kustomization(c)
    driver = check_csidriver(c) or DRIVER
    storageclasses = check_storageclasses(c, driver)
    images = check_images(c)
    check_volumes(c)
    check_node(c, driver)
    check_controller(c)
    check_namespaces(c)
    check_rbac(c)
    check_examples(c, storageclasses)
    if c.problems:
        print(f"check.py: {len(c.problems)} problem(s) in {root}:", file=sys.stderr)
        for p in c.problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"check.py: OK: {len(c.objects)} objects in {len({f for f, _ in c.objects})} files, "
          f"{images} containers with pinned images, driver {driver}, "
          f"StorageClasses {', '.join(sorted(storageclasses))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
