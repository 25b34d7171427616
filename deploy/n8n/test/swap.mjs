// swap.mjs TEMPLATE OUT SPEC_JSON — a test copy of an n8n template.
//
// The CRM triggers (Salesforce, HubSpot, Schedule, Webhook) are replaced by one
// Manual Trigger (or, with spec.webhookPath, a Webhook trigger that answers at
// once) followed by a Code node "Fixture items" returning spec.items, wired to
// every node a replaced trigger fed. Everything else stays as the template has
// it, apart from what a user edits after an import too:
//   spec.alsoReplace   further nodes the fixture stands in for (a CRM read that
//                      cannot be pointed elsewhere, such as HubSpot's)
//   spec.id            the copy's workflow id (16 letters and digits)
//   spec.name          its name
//   spec.replace       [[from, to], ...] text replaced in every string parameter
//                      (the ingest URL, the Slack webhook URL, ...)
//   spec.params        {node: {dotted.parameter: value}} parameters to set
//   spec.credentials   {node: {type: {id, name}}} credentials to use
import { readFileSync, writeFileSync } from 'node:fs';

const [template, out, specJson] = process.argv.slice(2);
const wf = JSON.parse(readFileSync(template, 'utf8'));
const spec = JSON.parse(specJson);
const TRIGGERS = new Set(['n8n-nodes-base.salesforceTrigger', 'n8n-nodes-base.hubspotTrigger',
  'n8n-nodes-base.scheduleTrigger']);

const replaced = new Set(wf.nodes.filter((n) => TRIGGERS.has(n.type)).map((n) => n.name));
if (replaced.size === 0) throw new Error(`${template}: no CRM trigger to replace`);
for (const name of spec.alsoReplace ?? []) replaced.add(name);
const fed = new Set();
for (const name of replaced) {
  for (const output of wf.connections[name]?.main ?? []) for (const c of output ?? []) fed.add(c.node);
  delete wf.connections[name];
}
for (const name of replaced) fed.delete(name);
wf.nodes = wf.nodes.filter((n) => !replaced.has(n.name));

const start = spec.webhookPath
  ? { parameters: { httpMethod: 'POST', path: spec.webhookPath, options: {} }, name: 'Test webhook',
      type: 'n8n-nodes-base.webhook', typeVersion: 2, webhookId: `test-${spec.webhookPath}` }
  : { parameters: {}, name: 'Manual', type: 'n8n-nodes-base.manualTrigger', typeVersion: 1 };
const fixture = {
  parameters: { jsCode: `return ${JSON.stringify(spec.items)}.map((json) => ({ json }));` },
  name: 'Fixture items', type: 'n8n-nodes-base.code', typeVersion: 2,
};
wf.nodes.push({ ...start, id: `${spec.id}-start`, position: [-240, 0] },
  { ...fixture, id: `${spec.id}-fixture`, position: [0, 0] });
wf.connections[start.name] = { main: [[{ node: 'Fixture items', type: 'main', index: 0 }]] };
wf.connections['Fixture items'] = { main: [[...fed].map((node) => ({ node, type: 'main', index: 0 }))] };

const rewrite = (v) => {
  if (typeof v === 'string') return (spec.replace ?? []).reduce((s, [a, b]) => s.split(a).join(b), v);
  if (Array.isArray(v)) return v.map(rewrite);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rewrite(x)]));
  return v;
};
for (const node of wf.nodes) {
  node.parameters = rewrite(node.parameters);
  for (const [path, value] of Object.entries(spec.params?.[node.name] ?? {})) {
    const keys = path.split('.');
    let o = node.parameters;
    for (const k of keys.slice(0, -1)) o = o[k] ??= {};
    o[keys.at(-1)] = value;
  }
  if (spec.credentials?.[node.name]) node.credentials = spec.credentials[node.name];
}
const unknown = Object.keys(spec.params ?? {}).filter((n) => !wf.nodes.some((x) => x.name === n));
if (unknown.length) throw new Error(`${template}: no node named ${unknown.join(', ')}`);
wf.id = spec.id;
wf.name = spec.name ?? `${wf.name} (test)`;
writeFileSync(out, JSON.stringify(wf, null, 2));
