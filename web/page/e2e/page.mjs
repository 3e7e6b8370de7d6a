// Drives the reviewer's page in Debian's headless Chromium (never a downloaded browser)
// and prints, as one JSON object on stdout, what the page showed in each scenario.
// cmd/cocoon/web_test.go runs it and judges the result.
//
//   node page.mjs SCENARIOS.json
//
// SCENARIOS.json is an array of {"name", "url", "sim_root_file"?, "pipelines"?,
// "expect_manifest_file"?, "api_key"?, "strict"?, "verifier_result_file"?,
// "download"?}. Names under .cocoon.test resolve to 127.0.0.1, so that a page on this
// machine can stand for one served by another. For each,
// the page is opened and its first verification (which runs on load) is read as
// "initial"; with sim_root_file, pipelines, expect_manifest_file or api_key, those are
// typed into the page's fields, with strict its strict box is ticked; with
// verifier_result_file, the
// page's cocoonVerify is replaced by one that returns the file's "boot" text for boot
// evidence and its "pipeline" text for pipeline evidence (results in the format of
// web/page/verifier, to see how the page renders them); then Verify is clicked,
// and the new result is read as "final"; with
// download, the boot evidence's download button is clicked and the file's bytes are
// returned as base64. Uncaught page errors and console errors (a refused script, a
// content security policy violation) are returned too.
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 45000;

const scenarios = JSON.parse(await readFile(process.argv[2], 'utf8'));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--host-resolver-rules=MAP *.cocoon.test 127.0.0.1'],
});

// shown reads what the page shows, from the DOM as a reviewer sees it.
function shown() {
  const text = (el) => (el ? el.textContent : '');
  const rows = (table) => Array.from(table ? table.rows : [], (r) => Array.from(r.cells, (c) => c.textContent));
  return {
    state: document.body.dataset.state || '',
    status: text(document.querySelector('#status')),
    servedBy: text(document.querySelector('#served-by')),
    verifier: text(document.querySelector('#verifier-hash')),
    evidence: Array.from(document.querySelectorAll('article.evidence'), (a) => ({
      kind: a.dataset.kind,
      verdict: a.dataset.verdict,
      pipeline: a.dataset.pipeline || '',
      verdictText: text(a.querySelector('.verdict')),
      summary: text(a.querySelector('.summary')),
      host: rows(a.querySelector('table.host')),
      td: rows(a.querySelector('table.td')),
      prompts: text(a.querySelector('.prompts')),
      events: Array.from(a.querySelectorAll('tr.event'), (r) => ({ type: r.cells[0].textContent, value: r.cells[1].textContent })),
      manifest: rows(a.querySelector('table.manifest')),
      expected: text(a.querySelector('.expected')),
      modules: Array.from(a.querySelectorAll('tr.module'), (r) => ({
        stage: r.cells[0].textContent, module: r.cells[1].textContent, config: r.cells[2].textContent, limits: r.cells[3].textContent,
      })),
      checks: Array.from(a.querySelectorAll('tr.check'), (r) => ({
        verdict: r.cells[0].textContent, name: r.cells[1].textContent, value: r.cells[2].textContent, detail: r.cells[3].textContent,
      })),
      download: Boolean(a.querySelector('button.download')),
    })),
  };
}

async function settled(page) {
  await page.waitForSelector('body[data-state="done"], body[data-state="broken"]', { timeout: STEP_TIMEOUT_MS });
  return page.evaluate(shown);
}

async function runScenario(s) {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  const out = { name: s.name, errors };
  try {
    const started = Date.now();
    await page.goto(s.url);
    out.initial = await settled(page);
    out.loadMs = Date.now() - started;
    if (s.sim_root_file || s.pipelines || s.expect_manifest_file || s.api_key || s.strict || s.verifier_result_file) {
      if (s.sim_root_file) await page.fill('#sim-root', await readFile(s.sim_root_file, 'utf8'));
      if (s.api_key) await page.fill('#api-key', s.api_key);
      if (s.expect_manifest_file) await page.fill('#expect-manifest', await readFile(s.expect_manifest_file, 'utf8'));
      if (s.strict) await page.check('#strict');
      if (s.verifier_result_file) {
        const result = await readFile(s.verifier_result_file, 'utf8');
        await page.evaluate((r) => {
          const results = JSON.parse(r);
          globalThis.cocoonVerify = (evidence, options) => (JSON.parse(options).pipeline_id ? results.pipeline : results.boot);
        }, result);
      }
      if (s.pipelines) await page.fill('#pipelines', s.pipelines.join('\n'));
      await page.click('#verify'); // sets data-state="running" before it awaits anything
      out.final = await settled(page);
    }
    if (s.download) {
      const [file] = await Promise.all([
        page.waitForEvent('download', { timeout: STEP_TIMEOUT_MS }),
        page.click('article.evidence[data-kind="boot"] button.download'),
      ]);
      out.downloadName = file.suggestedFilename();
      out.download = (await readFile(await file.path())).toString('base64');
    }
  } catch (e) {
    out.failure = String(e && e.stack || e);
  } finally {
    await context.close();
  }
  return out;
}

const results = [];
try {
  for (const s of scenarios) results.push(await runScenario(s));
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results) + '\n');
