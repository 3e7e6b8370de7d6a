// The reviewer's page (see web/page/page.go). It fetches a host's evidence, verifies it
// with the Go verifier compiled to WebAssembly (cocoonVerify, web/page/verifier/wasm),
// and shows the report. Everything the host sends is set as text (textContent), never
// parsed as HTML.
'use strict';

const $ = (selector, root = document) => root.querySelector(selector);

// The limits of one evidence request: waits a 429 asks for, and how often.
const MAX_RETRY_WAIT_S = 30;
const MAX_RETRIES = 3;
const NONCE_BYTES = 32;

let config = { served_by: 'host' };
// Each Verify run bumps it, so that a run started earlier stops writing.
let runID = 0;

function setStatus(text, failed = false) {
  const s = $('#status');
  s.textContent = text;
  s.classList.toggle('fail', failed);
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function base64ToHex(s) {
  try {
    return hex(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)));
  } catch {
    return String(s);
  }
}

// textOrHex shows event data: as text when it is printable UTF-8, else as hex.
function textOrHex(dataHex) {
  const bytes = new Uint8Array((dataHex.match(/../g) || []).map((h) => parseInt(h, 16)));
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    if (text !== '' && /^[\x20-\x7e]*$/.test(text)) return text;
  } catch { /* not UTF-8: hex below */ }
  return dataHex;
}

// newNonce returns NONCE_BYTES random bytes in hex, for one evidence request.
function newNonce() {
  return hex(crypto.getRandomValues(new Uint8Array(NONCE_BYTES)));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function loadConfig() {
  const resp = await fetch('/page/config.json', { cache: 'no-cache' });
  if (!resp.ok) throw new Error(`/page/config.json: ${resp.status}`);
  config = await resp.json();
  const local = config.served_by === 'local';
  $('#host-url').textContent = local ? config.host : location.origin;
  $('#served-by').textContent = local
    ? 'Served by cocoon verify --web from your own build: nothing the host serves runs in this page; the host only answers its evidence requests.'
    : 'Served by the host under review. A host that lies can serve a page that lies: to depend on the result, run cocoon verify --web from your own build, which serves this same page.';
  $('#served-by').classList.toggle('warn', !local);
  $('#sim-root').value = config.trust_sim_root || '';
  $('#policy').value = config.policy ? JSON.stringify(config.policy, null, 2) : '';
  $('#pipelines').value = (config.pipelines || []).join('\n');
  $('#expect-modules').value = (config.expect_modules || []).join('\n');
}

// loadVerifier fetches and starts the verifier, and resolves with its sha256 once
// cocoonVerify is defined.
async function loadVerifier() {
  const resp = await fetch('/page/verifier.wasm');
  if (!resp.ok) throw new Error(`the verifier could not be loaded: ${(await resp.text()).trim()}`);
  const bytes = await resp.arrayBuffer();
  const ready = new Promise((resolve) => addEventListener('cocoon-verifier-ready', resolve, { once: true }));
  const go = new Go();
  const { instance } = await WebAssembly.instantiate(bytes, go.importObject);
  go.run(instance).then(() => setStatus('The verifier stopped: reload the page.', true));
  await ready;
  if (!crypto.subtle) return 'sha256 not computed: this page is not in a secure context';
  return 'sha256:' + hex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}

// readFileInto puts a chosen file's text into a text field.
function readFileInto(input, field) {
  input.addEventListener('change', async () => {
    if (input.files.length) $(field).value = await input.files[0].text();
  });
}

let collateral = null;

// reviewerOptions reads what the reviewer gave: trust, the options of every
// verification, and expect, those of pipeline evidence only (the pipeline's modules
// and manifest). The expected manifest stays the reviewer's text: the verifier
// canonicalizes it as the host does, and a JavaScript object would reorder a config's
// numeric members, which the module reads in order.
function reviewerOptions() {
  const trust = {};
  const root = $('#sim-root').value.trim();
  if (root) trust.trust_sim_root = root;
  const policy = $('#policy').value.trim();
  if (policy) {
    try {
      trust.policy = JSON.parse(policy);
    } catch (e) {
      throw new Error(`the policy is not JSON: ${e.message}`);
    }
  }
  if (collateral) trust.collateral = collateral;
  if ($('#strict').checked) trust.strict = true;
  const expect = { raw: {} };
  const modules = lines('#expect-modules');
  if (modules.length) expect.expect_modules = modules;
  const manifest = $('#expect-manifest').value.trim();
  if (manifest) {
    try {
      JSON.parse(manifest);
    } catch (e) {
      throw new Error(`the expected manifest is not JSON: ${e.message}`);
    }
    expect.raw.expect_manifest = manifest;
  }
  return { trust, expect };
}

function lines(selector) {
  return $(selector).value.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

// authHeaders is the API key typed in, as the Authorization of a request to this
// page's origin (the host, or cocoon verify --web's relay). It throws, before anything
// is sent, when that request would carry the key in plaintext across a network: a page
// served over http from another machine (a host without TLS), whose relays would read
// it. Over https, or from this machine (localhost, 127.0.0.0/8, [::1], as the URL
// parser writes the host), the key goes; the relay of cocoon verify --web then sends it
// on only as the Go client allows (web/client inClearError).
function authHeaders() {
  const key = $('#api-key').value.trim();
  if (!key) return {};
  const host = location.hostname;
  if (location.protocol !== 'https:' && host !== 'localhost' && host !== '[::1]' && !/^127\.\d+\.\d+\.\d+$/.test(host)) {
    throw new Error(`Refusing to send the API key in plaintext to ${location.origin}, where whatever relays it reads it: ` +
      'clear the API key to verify without one, open this page over https, or run cocoon verify --web on your machine.');
  }
  return { Authorization: 'Bearer ' + key };
}

// fetchFromHost GETs path from the host (or the local relay), waiting as a 429's
// Retry-After asks, and returns the body's bytes. A non-2xx answer is an error with the
// host's message.
async function fetchFromHost(path) {
  for (let attempt = 0; ; attempt++) {
    const resp = await fetch(path, { headers: authHeaders(), cache: 'no-store' });
    const bytes = new Uint8Array(await resp.arrayBuffer());
    if (resp.ok) return bytes;
    const wait = Number(resp.headers.get('Retry-After'));
    if (resp.status === 429 && attempt < MAX_RETRIES && wait >= 0 && wait <= MAX_RETRY_WAIT_S) {
      setStatus(`The host limits quotes: retrying ${path.split('?')[0]} in ${wait} s, as it asks.`);
      await sleep(Math.max(wait, 1) * 1000);
      continue;
    }
    let message = new TextDecoder().decode(bytes).trim();
    try {
      message = JSON.parse(message).error.message || message;
    } catch { /* not an error object: the text as it is */ }
    const err = new Error(`GET ${path.split('?')[0]}: ${resp.status}: ${message}`);
    err.status = resp.status;
    throw err;
  }
}

// verifyEvidence runs the verifier on fetched bytes with options and times it. The
// members of options.raw are JSON texts, passed to the verifier as they are.
function verifyEvidence(bytes, options) {
  const { raw = {}, ...members } = options;
  let json = JSON.stringify(members);
  for (const [name, text] of Object.entries(raw)) {
    json = `${json.slice(0, -1)}${json === '{}' ? '' : ','}${JSON.stringify(name)}:${text}}`;
  }
  const start = performance.now();
  const result = JSON.parse(globalThis.cocoonVerify(bytes, json));
  return { result, ms: performance.now() - start };
}

function parseServed(bytes) {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

function addRows(table, rows) {
  for (const [name, value, cls] of rows) {
    if (value === undefined || value === null || value === '') continue;
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    const td = tr.insertCell();
    td.textContent = typeof value === 'string' ? value : JSON.stringify(value);
    if (cls) td.className = cls;
  }
}

function note(section, text) {
  const p = document.createElement('p');
  p.className = 'note';
  p.textContent = text;
  section.append(p);
}

function download(bytes, name) {
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// render shows one evidence's verification: kind is "boot" or "pipeline".
function render({ kind, title, fileName, bytes, result, ms, nonce, fetchError }) {
  const article = $('#evidence-template').content.firstElementChild.cloneNode(true);
  article.dataset.kind = kind;
  $('.title', article).textContent = title;
  const report = result && result.report;
  const served = bytes ? parseServed(bytes) : null;
  const ok = Boolean(report && report.ok);
  article.dataset.verdict = ok ? 'ok' : 'fail';
  const verdict = $('.verdict', article);
  verdict.className = 'verdict ' + (ok ? 'ok' : 'fail');
  if (fetchError) {
    verdict.textContent = `NOT VERIFIED: ${fetchError}`;
  } else if (result.error) {
    verdict.textContent = result.error_in === 'options'
      ? `NOT VERIFIED: what you gave is not valid: ${result.error}`
      : `FAILED: the host's answer is not evidence: ${result.error}`;
  } else if (!ok && report.checks.every((c) => c.verdict !== 'fail' || c.name === 'strict')) {
    verdict.textContent = 'FAILED in strict mode: no check failed, but not everything is pinned, fresh and free of warnings (see the "strict" check)';
  } else if (!ok) {
    verdict.textContent = 'FAILED: do not trust this host';
  } else {
    const warnings = report.checks.filter((c) => c.verdict === 'warn').length;
    verdict.textContent = warnings ? `VERIFIED, with ${warnings} warning${warnings > 1 ? 's' : ''}: read them below` : 'VERIFIED: every check passed';
  }
  if (report) {
    const count = (v) => report.checks.filter((c) => c.verdict === v).length;
    const parts = [`${report.checks.length} checks`, `${count('fail')} failed`, `${count('warn')} warnings`,
      `${count('skip')} not pinned by your policy (skip)`];
    // "fresh": the quote binds the nonce this page chose now; "strict": the report was
    // made in strict mode, where any skip or warning fails (cocoon-verify-report/v1).
    if (report.fresh !== undefined) parts.push(report.fresh ? 'fresh (the quote answers this page\'s nonce)' : 'NOT fresh');
    if (report.strict) parts.push('strict mode');
    $('.summary', article).textContent = parts.join(', ') + `; verified in this browser in ${ms.toFixed(1)} ms.`;
  }
  const button = $('.download', article);
  if (bytes) {
    button.addEventListener('click', () => download(bytes, fileName));
  } else {
    button.remove();
  }

  const evidence = (report && report.evidence) || {};
  addRows($('.host', article), [
    ['host', $('#host-url').textContent],
    ['evidence kind', evidence.kind || kind],
    ['mode', evidence.mode || (served && served.mode)],
    ['host key', evidence.host_key || (served && served.host_key && base64ToHex(served.host_key))],
    ['TLS key', evidence.tls_key || (served && served.tls_key && base64ToHex(served.tls_key))],
    ['pipeline', evidence.pipeline_id || (served && served.pipeline_id)],
    ['nonce this page sent', nonce],
    ['nonce the evidence answers', evidence.nonce || (served && served.nonce && base64ToHex(served.nonce))],
    ['checked at', report && report.checked_at],
  ]);

  const tdSection = $('.td-section', article);
  if (report && report.td) {
    const order = ['mrtd', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3', 'td_attributes', 'xfam', 'mr_seam', 'mr_owner',
      'mr_config_id', 'mr_owner_config', 'debug', 'tcb_status'];
    const keys = order.filter((k) => k in report.td).concat(Object.keys(report.td).filter((k) => !order.includes(k)));
    addRows($('.td', article), keys.map((k) => {
      const v = report.td[k];
      if (k === 'debug') return [k, v ? 'true: a debug TD, whose memory the machine\'s owner reads and writes' : 'false', v ? 'fail' : ''];
      if (k === 'tcb_status' && v === null) return [k, 'not evaluated: no Intel collateral was given'];
      return [k, v];
    }));
  } else {
    note(tdSection, 'This verifier\'s report carries no TD section: see the MRTD and RTMR checks below.');
  }

  renderEvents(article, report, served);
  renderManifest(article, report, served, kind);

  const checks = $('.checks tbody', article);
  for (const c of (report && report.checks) || []) {
    const tr = checks.insertRow();
    tr.className = 'check ' + c.verdict;
    tr.insertCell().textContent = c.verdict;
    tr.insertCell().textContent = c.name;
    tr.insertCell().textContent = c.value === undefined ? '' : (typeof c.value === 'string' ? c.value : JSON.stringify(c.value));
    tr.insertCell().textContent = c.detail;
  }
  $('#results').append(article);
  return article;
}

function renderEvents(article, report, served) {
  const section = $('.events-section', article);
  let events = report && report.events;
  if (!events && served && served.event_log && Array.isArray(served.event_log.events)) {
    events = served.event_log.events.map((e) => ({ type: String(e.type), value: textOrHex(String(e.data || '')) }));
    note(section, 'As the host served them (this verifier\'s report does not list events): the "event log" check says whether they replay to the quote\'s RTMR3.');
  }
  if (!events) {
    section.remove();
    return;
  }
  const body = $('.events tbody', article);
  for (const e of events) {
    const tr = body.insertRow();
    tr.className = 'event';
    tr.dataset.type = e.type;
    tr.insertCell().textContent = e.type;
    tr.insertCell().textContent = typeof e.value === 'string' ? e.value : JSON.stringify(e.value);
  }
  const backend = events.find((e) => e.type === 'backend');
  // The verifier judges the backend in its "where prompts go" check; an older one, in
  // a check named after the backend.
  const checks = (report && report.checks) || [];
  const check = checks.find((c) => c.name === 'where prompts go') || checks.find((c) => /backend/i.test(c.name));
  const prompts = $('.prompts', article);
  if (!backend) {
    prompts.textContent = 'Where prompts go: the event log measures no backend.';
    prompts.className = 'prompts fail';
  } else {
    prompts.textContent = `Where prompts go: ${backend.value}` +
      (check ? ` (check "${check.name}": ${check.verdict}: ${check.detail})` : ' (this verifier does not judge the backend: read the value)');
    prompts.className = 'prompts ' + (check ? check.verdict : '');
  }
}

function renderManifest(article, report, served, kind) {
  const section = $('.manifest-section', article);
  const check = report && report.checks.find((c) => c.name === 'expected manifest');
  const expected = $('.expected', article);
  if (check) {
    expected.textContent = `Expected manifest: ${check.verdict}: ${check.detail}`;
    expected.className = 'expected ' + check.verdict;
  } else {
    expected.textContent = 'No expected manifest given: the configs and limits below are what runs; read them, or give the manifest you expect.';
  }
  let manifest = report && report.manifest;
  if (!manifest && served && served.manifest && typeof served.manifest === 'object') {
    manifest = served.manifest;
    note(section, 'As the host served it: the "pipeline id" check says whether it hashes to the pipeline\'s id.');
  }
  if (kind !== 'pipeline' || !manifest) {
    section.remove();
    return;
  }
  addRows($('.manifest', article), [
    ['model', manifest.model],
    ['ABI version', manifest.abi_version],
  ]);
  const body = $('.modules tbody', article);
  for (const stage of ['pre', 'post']) {
    const modules = Array.isArray(manifest[stage]) ? manifest[stage] : [];
    modules.forEach((m, i) => {
      const tr = body.insertRow();
      tr.className = 'module';
      tr.insertCell().textContent = `${stage} ${i + 1}`;
      tr.insertCell().textContent = m.module;
      const config = document.createElement('pre');
      config.textContent = m.config === undefined || m.config === null ? '(none)' : JSON.stringify(m.config, null, 2);
      tr.insertCell().append(config);
      tr.insertCell().textContent = m.limits ? Object.entries(m.limits).map(([k, v]) => `${k}=${v}`).join(', ') : '';
    });
  }
  if (!body.rows.length) note(section, 'No modules: prompts reach the model unchanged.');
}

// pipelineIDs returns the pipelines to verify: those the reviewer named, and those the
// host lists (which needs a credential: the reviewer's key, or the relay's).
async function pipelineIDs() {
  const ids = lines('#pipelines');
  let listNote = '';
  try {
    const list = JSON.parse(new TextDecoder().decode(await fetchFromHost('/v1/pipelines')));
    for (const p of list.data || []) ids.push(p.id);
  } catch (e) {
    listNote = e.status === 401
      ? ' The host lists its pipelines only to a credential: give an API key, or their ids.'
      : ` The host's pipeline list could not be read (${e.message}).`;
  }
  return { ids: [...new Set(ids)], listNote };
}

async function run() {
  const id = ++runID;
  const button = $('#verify');
  button.disabled = true;
  document.body.dataset.state = 'running';
  $('#results').replaceChildren();
  try {
    const { trust, expect } = reviewerOptions();
    authHeaders(); // a key that cannot be sent stops the run before any request
    setStatus('Fetching the boot evidence, quoted for a random nonce…');
    const bootNonce = newNonce();
    let bytes;
    try {
      bytes = await fetchFromHost(`/v1/attestation?nonce=${bootNonce}`);
    } catch (e) {
      render({ kind: 'boot', title: 'Boot evidence', fetchError: e.message, nonce: bootNonce });
      setStatus('The host served no boot evidence.', true);
      return;
    }
    if (id !== runID) return;
    // The evidence must answer this page's nonce, as for cocoon verify: a quote for
    // another nonce, or for none (the quote taken at boot, served by a host or a relay
    // that dropped the nonce), is a replay and fails.
    const boot = verifyEvidence(bytes, { ...trust, nonce: bootNonce });
    const bootArticle = render({ kind: 'boot', title: 'Boot evidence', fileName: 'cocoon-boot-evidence.json', bytes, nonce: bootNonce, ...boot });
    if (!boot.result.report || !boot.result.report.ok) {
      setStatus('The boot evidence failed: do not trust this host. Its pipelines were not verified.', true);
      return;
    }
    const hostKey = base64ToHex(parseServed(bytes).host_key);
    const { ids, listNote } = await pipelineIDs();
    if (id !== runID) return;
    let failed = 0;
    for (const [i, pipeline] of ids.entries()) {
      if (!/^[0-9a-f]{64}$/.test(pipeline)) {
        render({ kind: 'pipeline', title: `Pipeline ${pipeline}`, fetchError: 'not a pipeline id (64 lowercase hex digits)' });
        failed++;
        continue;
      }
      setStatus(`Verifying pipeline ${i + 1} of ${ids.length}: a fresh quote over a random nonce…`);
      const nonce = newNonce();
      let ev;
      try {
        ev = await fetchFromHost(`/v1/pipelines/${pipeline}/attestation?nonce=${nonce}`);
      } catch (e) {
        render({ kind: 'pipeline', title: `Pipeline ${pipeline}`, fetchError: e.message, nonce });
        failed++;
        continue;
      }
      if (id !== runID) return;
      const v = verifyEvidence(ev, { ...trust, ...expect, pipeline_id: pipeline, nonce, host_key: hostKey });
      const article = render({ kind: 'pipeline', title: `Pipeline ${pipeline}`, fileName: `cocoon-pipeline-evidence-${pipeline.slice(0, 16)}.json`,
        bytes: ev, nonce, ...v });
      article.dataset.pipeline = pipeline;
      if (article.dataset.verdict !== 'ok') failed++;
    }
    bootArticle.scrollIntoView({ block: 'nearest' });
    const verified = `Boot evidence verified; ${ids.length - failed} of ${ids.length} pipelines verified.`;
    setStatus(verified + listNote, failed > 0);
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    if (id === runID) {
      button.disabled = false;
      document.body.dataset.state = 'done';
    }
  }
}

async function main() {
  readFileInto($('#sim-root-file'), '#sim-root');
  readFileInto($('#policy-file'), '#policy');
  readFileInto($('#expect-manifest-file'), '#expect-manifest');
  $('#collateral-file').addEventListener('change', async (ev) => {
    const files = ev.target.files;
    collateral = null;
    if (!files.length) return;
    try {
      collateral = JSON.parse(await files[0].text());
    } catch (e) {
      setStatus(`The collateral file is not JSON: ${e.message}`, true);
    }
  });
  $('#verify').addEventListener('click', run);
  try {
    await loadConfig();
    setStatus('Loading the verifier…');
    $('#verifier-hash').textContent = 'verifier ' + await loadVerifier();
  } catch (e) {
    setStatus(e.message, true);
    document.body.dataset.state = 'broken';
    return;
  }
  await run();
}

main();
