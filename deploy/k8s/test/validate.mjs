// node validate.mjs FILE.yaml... — validates every object of rendered
// manifests offline: core and apps objects against the Kubernetes API schemas
// of npm's kubernetes-models, the CRDs (KEDA ScaledObject, prometheus-operator
// ServiceMonitor and PrometheusRule) against their published openAPIV3Schema
// kept in schemas/. As `kubectl apply --validate=strict` would, a CRD object
// with a field its schema does not define fails. Exit 1 on any error, naming
// the file, the object and the field. Run through deploy/k8s/test/validate,
// which installs the packages outside the repository.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";
import Ajv from "ajv";

const here = path.dirname(fileURLToPath(import.meta.url));
const crds = {
  "keda.sh/v1alpha1/ScaledObject": "keda.sh_v1alpha1_ScaledObject.json",
  "monitoring.coreos.com/v1/ServiceMonitor": "monitoring.coreos.com_v1_ServiceMonitor.json",
  "monitoring.coreos.com/v1/PrometheusRule": "monitoring.coreos.com_v1_PrometheusRule.json",
};

// Structural schemas allow no unknown fields unless they say so.
function strict(s) {
  if (Array.isArray(s)) return s.map(strict);
  if (!s || typeof s !== "object") return s;
  const out = {};
  for (const [k, v] of Object.entries(s)) out[k] = k === "properties" ? Object.fromEntries(
    Object.entries(v).map(([p, ps]) => [p, strict(ps)])) : strict(v);
  if (out.type === "object" && out.properties && !out["x-kubernetes-preserve-unknown-fields"] &&
      out.additionalProperties === undefined)
    out.additionalProperties = false;
  return out;
}

// The schemas' patterns are Go regular expressions: take their inline (?i)
// as JavaScript's i flag.
function goRegExp(pattern, flags) {
  const i = pattern.indexOf("(?i)");
  return i >= 0 ? new RegExp(pattern.slice(0, i) + pattern.slice(i + 4), flags + "i") : new RegExp(pattern, flags);
}
goRegExp.code = "goRegExp";
const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, code: { regExp: goRegExp } });
const crdValidators = {};
for (const [key, file] of Object.entries(crds)) {
  const schema = JSON.parse(fs.readFileSync(path.join(here, "schemas", file), "utf8"));
  delete schema.$comment;
  crdValidators[key] = ajv.compile(strict(schema));
}

async function coreModel(apiVersion, kind) {
  const mod = apiVersion.includes("/") ? `kubernetes-models/${apiVersion}` : `kubernetes-models/${apiVersion}`;
  try {
    const m = await import(mod);
    return m[kind];
  } catch {
    return undefined;
  }
}

let errors = 0, checked = 0;
const counts = {};
for (const file of process.argv.slice(2)) {
  const docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter(Boolean);
  for (const obj of docs) {
    const id = `${file}: ${obj.kind} ${obj.metadata?.namespace ?? ""}/${obj.metadata?.name}`;
    const key = `${obj.apiVersion}/${obj.kind}`;
    checked++;
    counts[obj.kind] = (counts[obj.kind] ?? 0) + 1;
    if (obj.kind !== "Namespace" && !obj.metadata?.namespace) {
      errors++;
      console.error(`${id}: no namespace (kubectl apply would put it in the current one)`);
    }
    if (crdValidators[key]) {
      const v = crdValidators[key];
      if (!v(obj)) {
        errors++;
        for (const e of v.errors)
          console.error(`${id}: ${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? `: ${e.params.additionalProperty}` : ""}`);
      }
      continue;
    }
    const Model = await coreModel(obj.apiVersion, obj.kind);
    if (!Model) {
      errors++;
      console.error(`${id}: no schema for ${key}`);
      continue;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      errors++;
      console.error(`${id}: ${e.message}`);
    }
  }
}
console.log(`validate: ${checked} objects (${Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ")}), ` +
  `${errors} with errors`);
process.exit(errors || checked === 0 ? 1 : 0);
