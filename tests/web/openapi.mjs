// tests/web/openapi.mjs OPENAPI.json RESPONSES.json — checks proto/openapi.json
// and real responses of the running services against it:
//  1. the document is valid OpenAPI 3.1 (@seriousme/openapi-schema-validator);
//  2. every response (an array of {name, method, path, status, headers,
//     body}, collected by tests/integration/test_openapi.c) has its status
//     documented for its operation, a body of a documented media type that
//     is valid against its schema (ajv, JSON Schema 2020-12, formats
//     checked) or no body where none is documented, and documented headers
//     valid where present.
// Prints one line per response and a summary; exits 1 on any failure.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { Validator } from "@seriousme/openapi-schema-validator";

const [docPath, responsesPath] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(docPath, "utf8"));
const responses = JSON.parse(readFileSync(responsesPath, "utf8"));
let failures = 0;
const fail = (msg) => {
  failures++;
  console.log(`FAIL ${msg}`);
};

const checked = await new Validator().validate(doc);
if (!checked.valid) fail(`${docPath} is not valid OpenAPI 3.1: ${JSON.stringify(checked.errors, null, 1)}`);
else console.log(`ok   ${docPath}: valid OpenAPI ${doc.openapi}`);

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, "openapi.json");
const pointer = (...keys) => keys.map((k) => String(k).replaceAll("~", "~0").replaceAll("/", "~1")).join("/");
const compile = (ptr) => ajv.compile({ $ref: `openapi.json#/${ptr}` });
const resolve = (obj) => (obj && obj.$ref ? obj.$ref.slice(2).split("/").reduce((o, k) => o[k.replaceAll("~1", "/").replaceAll("~0", "~")], doc) : obj);

const covered = new Set();
for (const r of responses) {
  const op = doc.paths?.[r.path]?.[r.method.toLowerCase()];
  const what = `${r.name}: ${r.method} ${r.path} -> ${r.status}`;
  if (!op) {
    fail(`${what}: the operation is not in the document`);
    continue;
  }
  const spec = op.responses?.[String(r.status)];
  if (!spec) {
    fail(`${what}: status ${r.status} is not documented (documented: ${Object.keys(op.responses).join(", ")})`);
    continue;
  }
  covered.add(`${r.method} ${r.path} ${r.status}`);
  const problems = [];
  const ctype = (r.headers["content-type"] ?? "").split(";")[0].trim();
  if (spec.content) {
    // The body's media type must be one documented; its schema is checked.
    const media = spec.content[ctype];
    if (!media) problems.push(`content-type "${ctype}", documented ${Object.keys(spec.content).join(" or ")}`);
    let body;
    if (media && ctype === "application/json") {
      try {
        body = JSON.parse(r.body);
      } catch (e) {
        problems.push(`body is not JSON: ${e.message}`);
      }
    } else if (media) {
      body = r.body;
    }
    if (body !== undefined) {
      const validate = compile(pointer("paths", r.path, r.method.toLowerCase(), "responses", String(r.status), "content", ctype, "schema"));
      if (!validate(body)) problems.push(`body ${r.body.slice(0, 300)} against the schema: ${ajv.errorsText(validate.errors)}`);
    }
  } else if (r.body.length > 0) {
    problems.push(`a body where none is documented: ${r.body.slice(0, 120)}`);
  }
  for (const [name, h] of Object.entries(spec.headers ?? {})) {
    const value = r.headers[name.toLowerCase()];
    if (value === undefined) continue;
    const schema = resolve(h).schema;
    const validate = ajv.compile(schema);
    if (!validate(value)) problems.push(`header ${name}: "${value}": ${ajv.errorsText(validate.errors)}`);
  }
  if (problems.length) fail(`${what}: ${problems.join("; ")}`);
  else console.log(`ok   ${what}`);
}

const notProduced = [];
for (const [path, ops] of Object.entries(doc.paths))
  for (const [method, op] of Object.entries(ops))
    for (const status of Object.keys(op.responses ?? {}))
      if (!covered.has(`${method.toUpperCase()} ${path} ${status}`)) notProduced.push(`${method.toUpperCase()} ${path} ${status}`);
console.log(`${responses.length} responses checked, ${failures} failed; documented but not produced: ${notProduced.join(", ") || "none"}`);
process.exit(failures ? 1 : 0);
