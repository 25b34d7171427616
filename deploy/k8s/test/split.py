#!/usr/bin/env python3
"""split.py RENDERED.yaml OUTDIR — what `podman kube play` (4.3) can run of a
rendered overlay, for deploy/k8s/test/play:
  OUTDIR/deployments.yaml   the ConfigMaps and the Deployments
  OUTDIR/pod-<name>.yaml    per Job and CronJob: its pod template as a Pod
                            (same spec, securityContext, volumes, restartPolicy)
                            with the ConfigMaps
  OUTDIR/secret-<name>.json per Secret, for `podman secret create`
  OUTDIR/claims             the PersistentVolumeClaims' names, one a line
Prints the Pod files. Three adaptations to podman 4.3, none to what is tested
(image, command, env, securityContext, volumes):
- a Secret played from YAML is stored in a form podman's own secretKeyRef
  lookup cannot read; a secret created from {"KEY": base64} JSON works;
- a claim is a podman volume the test creates, as a provisioner would (kube
  play refuses to play a claim whose volume exists, as on a retry);
- in a Deployment's pod, podman restarts an init container that exited under
  the pod's restartPolicy Always and then fails to remove it: the played
  Deployments get OnFailure; and it publishes every containerPort on the host
  (where other stacks' ports collide): the ports are dropped and the probes
  name their port by number."""
import base64, json, os, sys
import yaml

objs = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
out = sys.argv[2]
configmaps = [o for o in objs if o["kind"] == "ConfigMap"]
for o in objs:
    if o["kind"] == "Secret":
        data = dict(o.get("data") or {})
        for k, v in (o.get("stringData") or {}).items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        with open(os.path.join(out, f"secret-{o['metadata']['name']}.json"), "w") as f:
            json.dump(data, f)
with open(os.path.join(out, "claims"), "w") as f:
    f.writelines(o["metadata"]["name"] + "\n" for o in objs if o["kind"] == "PersistentVolumeClaim")

deployments = [o for o in objs if o["kind"] == "Deployment"]
for d in deployments:
    spec = d["spec"]["template"]["spec"]
    spec["restartPolicy"] = "OnFailure"
    for c in spec["containers"]:
        ports = {p.get("name"): p["containerPort"] for p in c.pop("ports", [])}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            get = (c.get(probe) or {}).get("httpGet")
            if get and isinstance(get["port"], str):
                get["port"] = ports[get["port"]]
with open(os.path.join(out, "deployments.yaml"), "w") as f:
    yaml.safe_dump_all(configmaps + deployments, f, sort_keys=False)

for o in objs:
    if o["kind"] == "CronJob":
        tpl = o["spec"]["jobTemplate"]["spec"]["template"]
    elif o["kind"] == "Job":
        tpl = o["spec"]["template"]
    else:
        continue
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": o["metadata"]["name"], "labels": tpl.get("metadata", {}).get("labels", {})},
           "spec": tpl["spec"]}
    path = os.path.join(out, f"pod-{o['metadata']['name']}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all(configmaps + [pod], f, sort_keys=False)
    print(path)
