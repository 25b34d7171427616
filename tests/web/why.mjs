// tests/web/why.mjs PAGE API DEAL JWT ALLOWED_PORT DENIED_PORT SCREENSHOT
// The browser test of deploy/web/why.html: serves the page on two origins
// of its own (127.0.0.1:ALLOWED_PORT, listed in the API's
// DEALSCORE_CORS_ORIGINS, and 127.0.0.1:DENIED_PORT, not listed), opens it
// in Debian's Chromium (headless, a fresh profile) through playwright-core,
// and checks that
//  - from the listed origin the page shows exactly what /api/predict
//    answered it (the probability, the top driver, the change, every MEDDICC
//    element, the benchmark's cohort size); a screenshot goes to SCREENSHOT;
//  - from the other origin the call is refused and the page says so.
// Prints what the page showed as one JSON line; exits 1 on any failure.
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [page_, api, deal, jwt, allowedPort, deniedPort, screenshot] = process.argv.slice(2);
const html = readFileSync(page_);
const failures = [];
const expect = (ok, msg) => ok || failures.push(msg);

function serve(port) {
  const server = createServer((req, res) => {
    if (req.url.split("?")[0] !== "/why.html") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
  });
  return new Promise((resolve) => server.listen(Number(port), "127.0.0.1", () => resolve(server)));
}

const percent = (p) => (100 * p).toFixed(1) + "%";
const topDriver = (d) =>
  [...d.positive, ...d.negative].reduce((b, x) => (!b || Math.abs(x.contribution) > Math.abs(b.contribution) ? x : b), null);

async function listed(browser) {
  const page = await browser.newPage();
  const url = `http://127.0.0.1:${allowedPort}/why.html?` + new URLSearchParams({ api, deal, jwt });
  const answer = page.waitForResponse((r) => r.url().endsWith("/api/predict") && r.request().method() === "POST");
  await page.goto(url);
  const response = await answer;
  const body = await response.json();
  expect(response.status() === 200, `/api/predict answered ${response.status()}: ${JSON.stringify(body)}`);
  await page.waitForSelector("#status[data-state=done], #status[data-state=error]", { state: "attached", timeout: 20000 });
  const shown = await page.evaluate(() => ({
    state: document.querySelector("#status").dataset.state,
    error: document.querySelector("#error").textContent,
    proba: document.querySelector("#proba").textContent,
    probaValue: document.querySelector("#proba").dataset.value,
    top: document.querySelector("#top-driver [data-feature]")?.dataset.feature ?? null,
    topText: document.querySelector("#top-driver").textContent,
    delta: document.querySelector("#delta")?.dataset.value ?? null,
    moved: [...document.querySelectorAll("#moved li[data-feature]")].map((li) => li.dataset.feature),
    meddicc: Object.fromEntries([...document.querySelectorAll("#meddicc tr")].map((tr) => [tr.dataset.element, tr.querySelector(".flag").textContent])),
    evidence: [...document.querySelectorAll("#meddicc li")].map((li) => li.textContent),
    cohort: document.querySelector("#benchmark-table")?.dataset.cohortSize ?? null,
  }));
  expect(shown.state === "done", `the page did not finish: ${shown.error}`);
  expect(shown.proba === percent(body.proba_close), `shown ${shown.proba}, /api/predict ${body.proba_close}`);
  expect(shown.probaValue === String(body.proba_close), `data-value ${shown.probaValue}, /api/predict ${body.proba_close}`);
  const top = topDriver(body.drivers);
  expect(top && shown.top === top.feature && shown.topText.includes(`${top.label}: ${top.display}`), `top driver shown ${shown.topText}, /api/predict ${JSON.stringify(top)}`);
  expect(String(body.change.delta) === String(shown.delta), `delta shown ${shown.delta}, /api/predict ${body.change.delta}`);
  expect(JSON.stringify(shown.moved) === JSON.stringify(body.change.drivers.map((d) => d.feature)), `moved ${shown.moved}`);
  for (const [k, e] of Object.entries(body.meddicc))
    expect(shown.meddicc[k] === (e.present ? `✓ ${e.matches}` : "✗"), `MEDDICC ${k}: shown ${shown.meddicc[k]}, /api/predict ${JSON.stringify(e)}`);
  const phrases = Object.values(body.meddicc).flatMap((e) => e.evidence.map((x) => x.phrase));
  expect(phrases.every((p) => shown.evidence.some((t) => t.includes(`“${p}”`))), `evidence ${shown.evidence} lacks one of ${phrases}`);
  expect(String(body.benchmark?.cohort_size ?? null) === String(shown.cohort), `cohort shown ${shown.cohort}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.close();
  return { proba: shown.proba, proba_close: body.proba_close, top_driver: shown.topText, delta: body.change.delta,
           moved: shown.moved, meddicc: shown.meddicc, evidence: shown.evidence, cohort_size: shown.cohort, screenshot };
}

async function refused(browser) {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${deniedPort}/why.html?` + new URLSearchParams({ api, deal, jwt }));
  await page.waitForSelector("#status[data-state=done], #status[data-state=error]", { state: "attached", timeout: 20000 });
  const shown = await page.evaluate(() => ({
    state: document.querySelector("#status").dataset.state,
    error: document.querySelector("#error").textContent,
    visible: getComputedStyle(document.querySelector("#error")).display !== "none",
    proba: document.querySelector("#proba").textContent,
  }));
  expect(shown.state === "error" && shown.visible, `a page of another origin was not refused: ${JSON.stringify(shown)}`);
  expect(shown.error.includes("refused") && shown.error.includes(`127.0.0.1:${deniedPort}`), `error shown: ${shown.error}`);
  expect(shown.proba === "", `a refused page shows a probability: ${shown.proba}`);
  await page.close();
  return shown.error;
}

const servers = [await serve(allowedPort), await serve(deniedPort)];
const profile = mkdtempSync(join(tmpdir(), "ds-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.DEALSCORE_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  const shown = await listed(context);
  shown.refused_error = await refused(context);
  console.log(JSON.stringify(shown));
} catch (e) {
  failures.push(e.stack || String(e));
} finally {
  await context?.close();
  servers.forEach((s) => s.close());
  rmSync(profile, { recursive: true, force: true });
}
for (const f of failures) console.log(`FAIL ${f}`);
process.exit(failures.length ? 1 : 0);
