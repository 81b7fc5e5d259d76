"""Render and lint the Helm chart offline, then check the manifests.

The chart is rendered and linted (strict) with the Helm Go SDK through
``helm-python-sdk``; every rendered object is validated against the Kubernetes
OpenAPI schemas in strict mode with ``kubernetes-validate``. No cluster is involved.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from _require import require_import

# ImportError, or the bundled libhelm_c failing to load: a skip here, a failure in CI
helm = require_import("helm_python", "pip install helm-python-sdk", module=True)
kubernetes_validate = require_import("kubernetes_validate", "pip install kubernetes-validate", module=True)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "hemoflow"
RELEASE = "hf"
NAMESPACE = "slides"
# The chart's kubeVersion floor and the newest schemas bundled with kubernetes-validate.
K8S_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "gpu": {"workers": {"pools": {"gpu": {"enabled": True}}}},
    "tls": {"tls": {"enabled": True, "existingSecret": "hemoflow-tls"}},
    "autoscaling": {
        "workers": {
            "pools": {
                "cpu": {
                    "autoscaling": {
                        "enabled": True,
                        "minReplicas": 2,
                        "maxReplicas": 20,
                        "targetMemoryUtilizationPercentage": 70,
                    },
                    "podDisruptionBudget": {"enabled": True, "maxUnavailable": "25%"},
                },
                "gpu": {"enabled": True, "autoscaling": {"enabled": True, "maxReplicas": 3}},
            }
        }
    },
    "s3-iam": {
        "serviceAccount": {
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/hemoflow"}
        },
        "objectStorage": {"region": "eu-west-1", "credentials": {"source": "serviceAccount"}},
    },
    "s3-created-secret": {
        "objectStorage": {
            "endpointUrl": "http://seaweedfs.storage.svc:8333",
            "credentials": {
                "source": "create",
                "accessKeyId": "hemoflow",
                "secretAccessKey": "s3cr3t",
            },
        }
    },
    "everything": {
        "fullnameOverride": "hemoflow",
        "image": {"repository": "registry.example.org:5000/hemoflow", "tag": "0.1.0"},
        "imagePullSecrets": [{"name": "regcred"}],
        "config": {
            "env": {"HEMOFLOW_TILE_SIZE": "4096", "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        },
        "tls": {"enabled": True, "existingSecret": "hemoflow-tls"},
        "serviceAccount": {
            "name": "slides-reader",
            "annotations": {"iam.gke.io/gcp-service-account": "x@y.iam"},
        },
        "objectStorage": {"credentials": {"source": "serviceAccount"}},
        "networkPolicy": {
            "clientNamespaceSelector": {"matchLabels": {"hemoflow.io/clients": "allowed"}},
            "extraIngress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                    "ports": [{"port": 8787, "protocol": "TCP"}, {"port": 8788, "protocol": "TCP"}],
                }
            ],
        },
        "scheduler": {"extraArgs": ["--idle-timeout=3600"], "service": {"type": "LoadBalancer"}},
        "workers": {
            "pools": {
                "gpu": {"enabled": True, "gpus": 2, "autoscaling": {"enabled": True}},
                "highmem": {
                    "enabled": True,
                    "replicas": 1,
                    "nthreads": 4,
                    "memoryLimit": "60GiB",
                    "gpus": 0,
                    "resources": {
                        "requests": {"cpu": "4", "memory": "64Gi"},
                        "limits": {"cpu": "8", "memory": "64Gi"},
                    },
                    "autoscaling": {"enabled": False},
                    "podDisruptionBudget": {"enabled": False},
                },
            }
        },
    },
}

# The example values files shipped for the deployment guide are rendered and checked too.
EXAMPLES = REPO / "deploy" / "helm" / "examples"
VALUE_SETS.update(
    {f"example-{f.stem}": yaml.safe_load(f.read_text()) for f in sorted(EXAMPLES.glob("*.yaml"))}
)


@functools.cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


@functools.cache
def _render(name: str) -> dict[str, str]:
    return _chart().render(copy.deepcopy(VALUE_SETS[name]), name=RELEASE, namespace=NAMESPACE)


def render_docs(name: str) -> list[dict[str, Any]]:
    docs = []
    for path, text in sorted(_render(name).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return copy.deepcopy(docs)


def notes(name: str) -> str:
    return next(t for p, t in _render(name).items() if p.endswith("NOTES.txt"))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def workers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Worker Deployments by pool name."""
    return {
        d["metadata"]["labels"]["hemoflow.io/pool"]: d
        for d in of_kind(docs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }


def scheduler(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = [
        d
        for d in of_kind(docs, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "scheduler"
    ]
    return dep


def container(dep: dict[str, Any]) -> dict[str, Any]:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


ALL = pytest.mark.parametrize("values", sorted(VALUE_SETS))


# ---- lint and Kubernetes schemas ---------------------------------------------------


@ALL
def test_lint_strict(values):
    report = helm.lint(CHART, copy.deepcopy(VALUE_SETS[values]), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, json.dumps(report, indent=1)


@ALL
@pytest.mark.parametrize("k8s", K8S_VERSIONS)
def test_manifests_valid_kubernetes(values, k8s):
    docs = render_docs(values)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, k8s, strict=True)
        assert doc["metadata"]["name"] and len(doc["metadata"]["name"]) <= 63


@ALL
def test_rendering_is_deterministic(values):
    again = _chart().render(copy.deepcopy(VALUE_SETS[values]), name=RELEASE, namespace=NAMESPACE)
    assert again == _render(values)


def test_schema_accepts_defaults():
    _chart().validate_schema(None)
    _chart().validate_schema(_chart().values)


# ---- pod hardening and availability -------------------------------------------------


@ALL
def test_pods_hardened(values):
    docs = render_docs(values)
    deployments = of_kind(docs, "Deployment")
    assert deployments
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True
        assert psc["runAsUser"] != 0 and psc.get("runAsGroup", 1) != 0
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc.get("runAsUser", psc["runAsUser"]) != 0
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
            assert not sc.get("privileged", False)
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            for path in ("/scratch", "/tmp"):
                assert "emptyDir" in volumes[mounts[path]], (dep["metadata"]["name"], path)
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (
                    dep["metadata"]["name"],
                    kind,
                )


@ALL
def test_probes_hit_dask_health(values):
    docs = render_docs(values)
    expected = {"scheduler": 8787, "worker": 8788}
    for dep in of_kind(docs, "Deployment"):
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        c = container(dep)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] == "/health"
            assert ports[get["port"]] == expected[component]
        assert f"--dashboard-address=:{expected[component]}" in c["args"]


@ALL
def test_worker_pools_have_pdbs(values):
    docs = render_docs(values)
    pools = workers(docs)
    pdbs = {p["metadata"]["name"]: p for p in of_kind(docs, "PodDisruptionBudget")}
    for name, dep in pools.items():
        pool_values = _chart().merge_values(copy.deepcopy(VALUE_SETS[values]))["workers"]["pools"][
            name
        ]
        if not pool_values["podDisruptionBudget"]["enabled"]:
            assert dep["metadata"]["name"] not in pdbs
            continue
        pdb = pdbs[dep["metadata"]["name"]]
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert not [p for p in pdbs.values() if "scheduler" in p["metadata"]["name"]]


# ---- selectors -------------------------------------------------------------------------


@ALL
def test_selectors_pick_exactly_their_own_pods(values):
    docs = render_docs(values)
    templates = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(docs, "Deployment")
    }
    for dep in of_kind(docs, "Deployment"):
        sel = dep["spec"]["selector"]["matchLabels"]
        assert [n for n, labels in templates.items() if matches(sel, labels)] == [
            dep["metadata"]["name"]
        ]
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert [n for n, labels in templates.items() if matches(sel, labels)] == [
            pdb["metadata"]["name"]
        ]
    (svc,) = of_kind(docs, "Service")
    chosen = [n for n, labels in templates.items() if matches(svc["spec"]["selector"], labels)]
    assert chosen == [scheduler(docs)["metadata"]["name"]]


def test_pool_selectors_do_not_overlap():
    docs = render_docs("gpu")
    pools = workers(docs)
    assert set(pools) == {"cpu", "gpu"}
    cpu, gpu = pools["cpu"], pools["gpu"]
    cpu_sel, gpu_sel = (d["spec"]["selector"]["matchLabels"] for d in (cpu, gpu))
    assert cpu_sel["hemoflow.io/pool"] == "cpu" and gpu_sel["hemoflow.io/pool"] == "gpu"
    assert not matches(cpu_sel, gpu["spec"]["template"]["metadata"]["labels"])
    assert not matches(gpu_sel, cpu["spec"]["template"]["metadata"]["labels"])


# ---- worker pools ---------------------------------------------------------------------


def test_gpu_pool_disabled_by_default():
    docs = render_docs("defaults")
    assert set(workers(docs)) == {"cpu"}
    assert "nvidia.com/gpu" not in json.dumps(docs)


@pytest.mark.parametrize("values", ["gpu", "autoscaling", "everything"])
def test_gpu_pool_requests_gpus_and_advertises_resource(values):
    pools = workers(render_docs(values))
    gpus = 2 if values == "everything" else 1
    gpu = pools["gpu"]
    c = container(gpu)
    pod = gpu["spec"]["template"]["spec"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert c["resources"]["requests"]["nvidia.com/gpu"] == gpus
    i = c["args"].index("--resources")
    assert c["args"][i + 1] == f"GPU={gpus}"
    assert c["image"].split(":")[0] == "hemoflow-gpu"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])  # /dev/shm
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HEMOFLOW_DEVICE"] == "cuda" and env["HEMOFLOW_WORKER_POOL"] == "gpu"
    for name, dep in pools.items():
        if name == "gpu":
            continue
        c = container(dep)
        assert "--resources" not in c["args"] and not any("GPU=" in a for a in c["args"])
        for kind in ("requests", "limits"):
            assert "nvidia.com/gpu" not in c["resources"][kind]
        assert "tolerations" not in dep["spec"]["template"]["spec"]
        assert "gpu" not in c["image"].split(":")[0]
        assert {"name": "HEMOFLOW_DEVICE", "value": "cuda"} not in c["env"]


@ALL
def test_workers_connect_to_scheduler_service(values):
    docs = render_docs(values)
    (svc,) = of_kind(docs, "Service")
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports == {"scheduler": 8786, "dashboard": 8787}
    tls = VALUE_SETS[values].get("tls", {}).get("enabled", False)
    proto = "tls" if tls else "tcp"
    for dep in workers(docs).values():
        c = container(dep)
        assert c["command"] == ["dask", "worker"]
        assert c["args"][0] == f"{proto}://{svc['metadata']['name']}:8786"
        assert "--name=$(POD_NAME)" in c["args"]
        # one malloc arena from process start (hemoflow/kernels/_malloc.py)
        assert {"name": "MALLOC_ARENA_MAX", "value": "1"} in c["env"]
    sched = container(scheduler(docs))
    assert sched["command"] == ["dask", "scheduler"]
    assert f"--protocol={proto}" in sched["args"]
    assert scheduler(docs)["spec"]["strategy"]["type"] == "Recreate"


def test_autoscaling_hpas():
    docs = render_docs("autoscaling")
    pools = workers(docs)
    hpas = {h["metadata"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {d["metadata"]["name"] for d in pools.values()}
    for dep in pools.values():
        hpa = hpas[dep["metadata"]["name"]]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": dep["metadata"]["name"],
        }
        assert "replicas" not in dep["spec"]  # the HPA owns the replica count
    cpu_hpa = hpas[pools["cpu"]["metadata"]["name"]]
    assert (cpu_hpa["spec"]["minReplicas"], cpu_hpa["spec"]["maxReplicas"]) == (2, 20)
    assert {m["resource"]["name"] for m in cpu_hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert not of_kind(render_docs("defaults"), "HorizontalPodAutoscaler")
    assert workers(render_docs("defaults"))["cpu"]["spec"]["replicas"] == 2


def test_autoscaling_min_above_max_fails():
    bad = {
        "workers": {
            "pools": {"cpu": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}
        }
    }
    with pytest.raises(helm.HelmError, match="minReplicas"):
        _chart().render(bad, name=RELEASE, namespace=NAMESPACE)


# ---- configuration and object storage ---------------------------------------------------


@ALL
def test_settings_come_from_configmap(values):
    docs = render_docs(values)
    (cm,) = of_kind(docs, "ConfigMap")
    assert cm["data"]["HEMOFLOW_SCRATCH"] == "/scratch"
    assert all(
        k.startswith(("HEMOFLOW_", "DASK_", "AWS_"))
        or k in {"HOME", "NUMBA_CACHE_DIR", "MPLCONFIGDIR"}
        for k in cm["data"]
    )
    assert "AWS_SECRET_ACCESS_KEY" not in cm["data"] and "AWS_ACCESS_KEY_ID" not in cm["data"]
    for dep in of_kind(docs, "Deployment"):
        c = container(dep)
        assert {"configMapRef": {"name": cm["metadata"]["name"]}} in c["envFrom"]
        assert "checksum/config" in dep["spec"]["template"]["metadata"]["annotations"]


def _aws_env(dep):
    return {e["name"]: e for e in container(dep)["env"] if e["name"].startswith("AWS_")}


def test_s3_existing_secret_by_default():
    docs = render_docs("defaults")
    assert not of_kind(docs, "Secret")
    for dep in of_kind(docs, "Deployment"):
        env = _aws_env(dep)
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "hemoflow-s3",
            "key": "AWS_ACCESS_KEY_ID",
        }
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "hemoflow-s3"


def test_s3_created_secret_and_endpoint():
    docs = render_docs("s3-created-secret")
    (secret,) = of_kind(docs, "Secret")
    assert secret["stringData"] == {
        "AWS_ACCESS_KEY_ID": "hemoflow",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
    }
    (cm,) = of_kind(docs, "ConfigMap")
    assert cm["data"]["AWS_ENDPOINT_URL"] == "http://seaweedfs.storage.svc:8333"
    for dep in of_kind(docs, "Deployment"):
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in _aws_env(dep).values()}
        assert refs == {secret["metadata"]["name"]}


def test_s3_iam_uses_service_account_not_keys():
    docs = render_docs("s3-iam")
    assert not of_kind(docs, "Secret")
    (sa,) = of_kind(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    (cm,) = of_kind(docs, "ConfigMap")
    assert cm["data"]["AWS_DEFAULT_REGION"] == "eu-west-1" and "AWS_ENDPOINT_URL" not in cm["data"]
    for dep in of_kind(docs, "Deployment"):
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
        assert not _aws_env(dep)


# ---- TLS and network policy -----------------------------------------------------------------


@pytest.mark.parametrize("values", ["tls", "everything"])
def test_tls_between_all_dask_processes(values):
    docs = render_docs(values)
    for dep in of_kind(docs, "Deployment"):
        c = container(dep)
        pod = dep["spec"]["template"]["spec"]
        (vol,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert vol["secret"]["secretName"] == "hemoflow-tls"
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == "tls"]
        assert mount["readOnly"] is True
        files = {
            a.split("=", 1)[0]: a.split("=", 1)[1] for a in c["args"] if a.startswith("--tls-")
        }
        assert files == {
            "--tls-ca-file": f"{mount['mountPath']}/ca.crt",
            "--tls-cert": f"{mount['mountPath']}/tls.crt",
            "--tls-key": f"{mount['mountPath']}/tls.key",
        }
        assert {"path": "tls.key", "key": "tls.key"} in vol["secret"]["items"]
        assert "--protocol=tls" in c["args"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    text = notes(values)
    assert "tls://" in text and "Security(" in text and "hemoflow.Client(" in text
    assert "tls://" not in json.dumps(render_docs("defaults"))


@ALL
def test_network_policy_admits_only_release_and_client_pods(values):
    docs = render_docs(values)
    policies = of_kind(docs, "NetworkPolicy")
    assert len(policies) == 2
    templates = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(docs, "Deployment")
    }
    covered = set()
    for pol in policies:
        spec = pol["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        covered |= {
            n
            for n, labels in templates.items()
            if matches(spec["podSelector"]["matchLabels"], labels)
        }
        peers = [p for rule in spec["ingress"][:2] for p in rule["from"]]
        release = {"app.kubernetes.io/name": "hemoflow", "app.kubernetes.io/instance": RELEASE}
        assert peers[0] == {"podSelector": {"matchLabels": release}}
        assert peers[1]["podSelector"] == {"matchLabels": {"hemoflow.io/client": "true"}}
        assert spec["ingress"][1]["ports"]  # clients reach named ports only
    assert covered == set(templates)  # every pod is behind a policy
    sched_policy = next(
        p for p in policies if p["metadata"]["labels"]["app.kubernetes.io/component"] == "scheduler"
    )
    assert {p["port"] for p in sched_policy["spec"]["ingress"][1]["ports"]} == {8786, 8787}


def test_network_policy_can_be_disabled():
    docs = _chart().render({"networkPolicy": {"enabled": False}}, name=RELEASE, namespace=NAMESPACE)
    assert "NetworkPolicy" not in "".join(docs.values())


def test_notes_explain_how_to_connect():
    text = notes("defaults")
    assert "port-forward svc/hf-hemoflow-scheduler 8786:8786" in text
    assert 'hemoflow.Client("tcp://hf-hemoflow-scheduler.slides.svc:8786")' in text
    assert "hemoflow.io/client" in text


# ---- the values schema rejects bad values ------------------------------------------------------

BAD_VALUES = {
    "negative-replicas": {"workers": {"pools": {"cpu": {"replicas": -1}}}},
    "replicas-wrong-type": {"workers": {"pools": {"cpu": {"replicas": "two"}}}},
    "unknown-top-level-key": {"schedular": {"port": 8786}},
    "unknown-pool-key": {"workers": {"pools": {"cpu": {"gpu": 1}}}},
    "negative-gpus": {"workers": {"pools": {"gpu": {"enabled": True, "gpus": -1}}}},
    "bad-pool-name": {"workers": {"pools": {"GPU_Pool": {"enabled": True}}}},
    "incomplete-pool": {"workers": {"pools": {"extra": {"enabled": True}}}},
    "port-out-of-range": {"scheduler": {"port": 70000}},
    "enabled-not-bool": {"tls": {"enabled": "yes"}},
    "tls-without-secret": {"tls": {"enabled": True}},
    "credentials-unknown-source": {"objectStorage": {"credentials": {"source": "vault"}}},
    "create-secret-without-keys": {"objectStorage": {"credentials": {"source": "create"}}},
    "bad-endpoint": {"objectStorage": {"endpointUrl": "seaweedfs:8333"}},
    "root-user": {"podSecurityContext": {"runAsUser": 0}},
    "writable-root-fs": {"containerSecurityContext": {"readOnlyRootFilesystem": False}},
    "privilege-escalation": {"containerSecurityContext": {"allowPrivilegeEscalation": True}},
    "bad-pull-policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad-quantity": {"workers": {"pools": {"cpu": {"resources": {"limits": {"memory": "lots"}}}}}},
    "hpa-over-100-percent": {
        "workers": {
            "pools": {
                "cpu": {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": 150}}
            }
        }
    },
    "bad-pdb": {"workers": {"pools": {"cpu": {"podDisruptionBudget": {"maxUnavailable": "half"}}}}},
    "scratch-overridden": {"config": {"env": {"HEMOFLOW_SCRATCH": "/data"}}},
    "non-hemoflow-env": {"config": {"env": {"PATH": "/bin"}}},
    "env-not-string": {"config": {"env": {"HEMOFLOW_TILE_SIZE": 2048}}},
    "pool-env-not-settings": {"workers": {"pools": {"cpu": {"env": {"LD_PRELOAD": "x.so"}}}}},
    "bad-service-type": {"scheduler": {"service": {"type": "ExternalName"}}},
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(name):
    bad = copy.deepcopy(BAD_VALUES[name])
    with pytest.raises(helm.HelmValuesError, match="schema"):
        _chart().render(bad, name=RELEASE, namespace=NAMESPACE)
    report = helm.lint(CHART, copy.deepcopy(bad), strict=True, namespace=NAMESPACE)
    assert report["errors"], name


def test_example_values_files_are_covered():
    assert {"example-aws-eks-gpu", "example-s3-compatible"} <= set(VALUE_SETS)
