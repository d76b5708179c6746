#!/usr/bin/env bash
# Checks the deployment files without a cluster (CI runs it from `make test`):
#   1. renders deploy/kubernetes (kubectl kustomize when kubectl is here, else the same two transformations
#      kustomization.yaml uses, done in Python) and validates every resource with kubernetes-validate, in strict
#      mode, against each Kubernetes version in K8S_VERSIONS;
#   2. checks what a schema cannot: every container (init containers too) passes the "restricted" Pod Security
#      Standard, images are pinned to the release tag with IfNotPresent, the shard count reaches every pod that
#      needs it, gRPC ports say appProtocol grpc, every server container has a startup probe;
#   3. systemd units: no shell in ExecStart, and `systemd-analyze verify` when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# kubernetes-validate 1.37.0 carries schemas for Kubernetes 1.25 to 1.37; the four newest are checked.
VALIDATE_VERSION=1.37.0
K8S_VERSIONS=(1.34.0 1.35.0 1.36.0 1.37.0)

say() { echo "check-manifests: $*" >&2; }
die() { echo "check-manifests: error: $*" >&2; exit 1; }

if [ "$(kubernetes-validate --version 2>/dev/null || true)" != "$VALIDATE_VERSION" ]; then
  say "installing kubernetes-validate==$VALIDATE_VERSION"
  python3 -m pip install --quiet "kubernetes-validate==$VALIDATE_VERSION" || die "pip install kubernetes-validate failed"
fi
python3 -c "import yaml" 2>/dev/null || python3 -m pip install --quiet pyyaml || die "pip install pyyaml failed"

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
rendered=$tmp/rendered.yaml
if command -v kubectl >/dev/null; then
  kubectl kustomize deploy/kubernetes > "$rendered" || die "kubectl kustomize deploy/kubernetes failed"
  renderer="kubectl kustomize"
else
  renderer=""
fi

# Renders (without kubectl) and checks the rendered resources.
python3 - "$rendered" "$renderer" <<'PY'
import re, sys, yaml

rendered, renderer = sys.argv[1], sys.argv[2]
fail = []
kustomization = yaml.safe_load(open("deploy/kubernetes/kustomization.yaml"))
shards = next(r["count"] for r in kustomization["replicas"] if r["name"] == "radial-worker")

if renderer:
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
else:
    # The transformations kustomization.yaml asks for: replicas, then copies of the StatefulSet's replicas into
    # env values selected as containers.[name=C].env.[name=V].value.
    docs = [d for d in yaml.safe_load_all(open("deploy/kubernetes/radial.yaml")) if d]
    find = lambda kind, name: next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    for r in kustomization.get("replicas", []):
        find("StatefulSet", r["name"])["spec"]["replicas"] = r["count"]
    for rep in kustomization.get("replacements", []):
        src = rep["source"]
        assert src["fieldPath"] == "spec.replicas", "the Python renderer knows only spec.replicas sources"
        value = str(find(src["kind"], src["name"])["spec"]["replicas"])
        for target in rep["targets"]:
            doc = find(target["select"]["kind"], target["select"]["name"])
            for path in target["fieldPaths"]:
                m = re.fullmatch(r"spec\.template\.spec\.containers\.\[name=([\w-]+)\]\.env\.\[name=(\w+)\]\.value", path)
                assert m, f"the Python renderer does not know the field path {path}"
                container = next(c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == m[1])
                next(e for e in container["env"] if e["name"] == m[2])["value"] = value
    yaml.safe_dump_all(docs, open(rendered, "w"))

release = re.search(r'static let version = "([^"]+)"', open("Sources/RadialCommandLine/Serving.swift").read())[1]
allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}

for doc in docs:
    where = f'{doc["kind"]}/{doc["metadata"]["name"]}'
    if doc["kind"] == "Service":
        for port in doc["spec"]["ports"]:
            if port["name"] == "grpc" and port.get("appProtocol") != "grpc":
                fail.append(f"{where}: port grpc needs appProtocol: grpc")
    if doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "radial-worker" and doc["spec"]["replicas"] != shards:
        fail.append(f"{where}: replicas {doc['spec']['replicas']}, not the shard count {shards}")
    template = doc.get("spec", {}).get("template")
    if not template:
        continue
    pod = template["spec"]
    psc = pod.get("securityContext", {})
    # The checks of the restricted Pod Security Standard that these pods could fail.
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            fail.append(f"{where}: {key}")
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= allowed_volumes:
            fail.append(f"{where}: volume {v['name']} of type {kinds - allowed_volumes}, not allowed at restricted")
    for c in pod.get("initContainers", []) + pod["containers"]:
        cw = f'{where} container {c["name"]}'
        sc = c.get("securityContext") or {}
        effective = lambda k: sc.get(k, psc.get(k))
        if effective("runAsNonRoot") is not True:
            fail.append(f"{cw}: runAsNonRoot must be true")
        if effective("runAsUser") != 10001:
            fail.append(f"{cw}: runAsUser must be 10001 (the image's user)")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail.append(f"{cw}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            fail.append(f"{cw}: privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            fail.append(f"{cw}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            fail.append(f"{cw}: capabilities may add only NET_BIND_SERVICE")
        if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            fail.append(f"{cw}: seccompProfile must be RuntimeDefault or Localhost")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            fail.append(f"{cw}: hostPort")
        if c["image"] != f"radial:{release}":
            fail.append(f"{cw}: image {c['image']}, not radial:{release} (the release in Serving.swift)")
        if c.get("imagePullPolicy") != "IfNotPresent":
            fail.append(f"{cw}: imagePullPolicy must be IfNotPresent")
    for c in pod["containers"]:
        cw = f'{where} container {c["name"]}'
        if "startupProbe" not in c:
            fail.append(f"{cw}: no startupProbe (liveness would kill it while it loads or waits)")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if "RADIAL_SHARDS" in env and env["RADIAL_SHARDS"] != str(shards):
            fail.append(f"{cw}: RADIAL_SHARDS is {env['RADIAL_SHARDS']!r}, not the shard count {shards}")

if fail:
    print("check-manifests: error:\n  " + "\n  ".join(fail), file=sys.stderr)
    sys.exit(1)
print(f"check-manifests: {len(docs)} resources pass the restricted level and the project's rules "
      f"(rendered with {renderer or 'the Python renderer'}; {shards} shards; image radial:{release})", file=sys.stderr)
PY

for v in "${K8S_VERSIONS[@]}"; do
  kubernetes-validate --strict --quiet -k "$v" "$rendered" || die "deploy/kubernetes does not validate against Kubernetes $v"
done
say "deploy/kubernetes validates (strict) against Kubernetes ${K8S_VERSIONS[*]}"

# systemd: the binaries read the environment, so no unit needs a shell to build a command line.
for unit in deploy/systemd/*.service; do
  grep -q '^ExecStart=/usr/local/bin/radial-[a-z]*$' "$unit" || die "$unit: ExecStart must run the binary directly (settings come from the environment)"
done
if command -v systemd-analyze >/dev/null; then
  # Verified as installed units would be, with stand-ins for the binaries and the template as instance 0.
  mkdir -p "$tmp/units" "$tmp/bin"
  for b in radial-worker radial-coordinator; do printf '#!/bin/sh\n' > "$tmp/bin/$b"; chmod +x "$tmp/bin/$b"; done
  sed "s|/usr/local/bin/|$tmp/bin/|" deploy/systemd/radial-coordinator.service > "$tmp/units/radial-coordinator.service"
  sed "s|/usr/local/bin/|$tmp/bin/|" deploy/systemd/radial-worker@.service > "$tmp/units/radial-worker@0.service"
  out=$(systemd-analyze verify --man=no "$tmp/units/radial-coordinator.service" "$tmp/units/radial-worker@0.service" 2>&1) \
    || die "systemd-analyze verify: $out"
  [ -z "$out" ] || die "systemd-analyze verify: $out"
  say "systemd units verify"
else
  say "systemd-analyze not installed: the units' syntax is not verified"
fi
