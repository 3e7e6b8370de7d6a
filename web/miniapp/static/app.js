// The sample Cocoon Mini App: verify the host in this browser, show what was verified,
// fund an escrow with TON Connect, and chat with every request sealed to the attested
// key and paid from the escrow. All the cryptography is the browser library's
// (/sdk/cocoon.js); this file is the app around it.
//
// Everything the host sends (reports, answers, errors) is set as text, never as HTML.
//
// The Mini App's URL is the bot developer's configuration, so the options come from it:
//   ?pipeline=<64 hex>          the pipeline to verify and chat through (optional)
//   &policy=<JSON>              the policy the host must meet, as `cocoon verify
//                               --write-policy` writes it (without one, any genuine TD
//                               running any host binary and model passes)
//   &strict=1                   every check must pass outright: nothing left open
//   &trust_sim_root=<PEM>       a simulator root to trust (local devnets only: simulated
//                               evidence proves nothing, and without it, it fails)
import { connect, newClientKey, clientKeyFromSeed } from '/sdk/cocoon.js';
import { initData, user, postEvent } from './telegram.js';

const params = new URLSearchParams(location.search);
const pipeline = params.get('pipeline') || undefined;
const trustSimRoot = params.get('trust_sim_root') || undefined;
const policy = params.get('policy') || undefined;
const strict = params.get('strict') === '1';

// How long the app waits for the host to see a deposit, and how often it asks.
const ESCROW_WAIT_MS = 5 * 60 * 1000;
const ESCROW_POLL_MS = 2000;
// How long a wallet may take to sign and send the deposit.
const DEPOSIT_VALID_SECONDS = 5 * 60;
// The completion bound of each request: with it the host reserves what the answer can
// cost rather than the model's whole context.
const MAX_TOKENS = 48;

const $ = (id) => document.getElementById(id);

let host = null;       // the verified host (connect's result)
let bills = false;     // whether the host bills requests to escrows
let wallet = null;     // the TON Connect wallet, when connected
let escrowReady = false;
const history = [];    // the conversation, as chat messages

function setStatus(el, text, verdict) {
  el.textContent = text;
  if (verdict) el.dataset.verdict = verdict;
  else delete el.dataset.verdict;
}

function addRow(tbody, name, value, verdict) {
  const tr = tbody.insertRow();
  tr.className = 'line';
  if (verdict) tr.dataset.verdict = verdict;
  const k = tr.insertCell();
  k.textContent = name;
  const v = tr.insertCell();
  v.className = 'value';
  v.textContent = value;
  return tr;
}

function checkOf(report, name) {
  return (report && report.checks || []).find((c) => c.name === name);
}

function verdictOf(check) {
  if (!check) return '';
  return check.verdict === 'fail' ? 'fail' : 'ok';
}

// showVerified shows the lines a user should see before trusting the host: the kind of
// quote, the host key, freshness, the e2e keys the app seals to, the backend and model,
// the GPUs, and the pipeline's modules and manifest, each with its check's verdict; then
// every check. report is connect's { boot, pipeline }, or, when verification failed, the
// report of the evidence that failed (or none).
function showVerified(report, suite) {
  const tbody = $('verified').tBodies[0];
  const checks = $('checks').tBodies[0];
  tbody.replaceChildren();
  checks.replaceChildren();
  if (report && report.checks) {
    report = report.evidence && report.evidence.kind === 'pipeline' ? { pipeline: report } : { boot: report };
  }
  const { boot, pipeline: p } = report || {};
  if (boot) {
    const ev = boot.evidence || {};
    const quote = checkOf(boot, 'quote signature chain');
    addRow(tbody, 'quote', ev.mode === 'tdx' ? 'Intel TDX quote' : `${ev.mode} quote (simulated: no real TD vouches for this host)`,
      verdictOf(quote) || 'fail').dataset.line = 'quote';
    addRow(tbody, 'host key', ev.host_key || '', verdictOf(checkOf(boot, 'REPORTDATA binding')) || 'fail').dataset.line = 'host-key';
    addRow(tbody, 'fresh', boot.fresh ? 'yes: the evidence answers the nonce this app sent' : 'no', boot.fresh ? 'ok' : 'fail').dataset.line = 'fresh';
    const e2e = checkOf(boot, 'e2e keys');
    addRow(tbody, 'e2e keys', `${e2e ? e2e.detail || e2e.value : 'none'}${suite ? `; this app seals to ${suite}` : ''}`,
      verdictOf(e2e) || 'fail').dataset.line = 'e2e-keys';
    for (const e of boot.events || []) {
      if (['backend', 'model', 'gpus'].includes(e.type)) {
        addRow(tbody, e.type === 'gpus' ? 'GPUs' : e.type, e.value, 'ok').dataset.line = e.type;
      }
    }
  }
  if (p) {
    addRow(tbody, 'pipeline', p.evidence && p.evidence.pipeline_id || pipeline, p.ok ? 'ok' : 'fail').dataset.line = 'pipeline';
    const m = p.manifest || {};
    for (const stage of ['pre', 'post']) {
      for (const mod of m[stage] || []) {
        const config = mod.config === undefined ? '' : ` config ${JSON.stringify(mod.config)}`;
        addRow(tbody, `${stage} module`, `${mod.module}${config}`, 'ok').dataset.line = 'module';
      }
    }
    if (p.manifest) addRow(tbody, 'manifest', JSON.stringify(m), 'ok').dataset.line = 'manifest';
  }
  for (const [kind, r] of [['boot', boot], ['pipeline', p]]) {
    for (const c of (r && r.checks) || []) {
      addRow(checks, `${kind}: ${c.name}`, [c.verdict, c.value, c.detail].filter(Boolean).join(' · '), c.verdict === 'fail' ? 'fail' : 'ok');
    }
  }
}

// clientKey is the escrow's client key, its seed kept in this origin's localStorage
// (Telegram keeps a Mini App's storage per origin). It signs every request billed to the
// escrow; losing it loses no money (the wallet withdraws what is unspent), only the
// escrow's use.
let clientKeyPromise = null;
function clientKey() {
  if (!clientKeyPromise) {
    const saved = localStorage.getItem('cocoon.clientKeySeed');
    clientKeyPromise = saved
      ? clientKeyFromSeed(Uint8Array.from(atob(saved), (c) => c.charCodeAt(0)))
      : newClientKey().then((k) => {
        localStorage.setItem('cocoon.clientKeySeed', btoa(String.fromCharCode(...k.privateKey)));
        return k;
      });
  }
  return clientKeyPromise;
}

// The escrow funded from a wallet, remembered per wallet.
const escrowKey = () => `cocoon.escrow.${wallet.account.address}`;

// toNano turns a decimal amount of TON ("1.5") into nanoTON as a decimal string, or
// throws on anything else.
function toNano(text) {
  const m = /^\s*(\d{1,9})(?:\.(\d{1,9}))?\s*$/.exec(text);
  if (!m) throw new Error('the amount is not a number of TON with at most 9 decimals');
  const nano = BigInt(m[1]) * 1000000000n + BigInt((m[2] || '').padEnd(9, '0'));
  if (nano === 0n) throw new Error('the amount is zero');
  return nano.toString();
}

function describeError(e) {
  return e && e.code ? `${e.code}: ${e.message}` : String(e && e.message || e);
}

// priceText says what the model the app chats with costs, from the host's price list
// (cocoon-pricing-v3: a table per model, else the default table).
function priceText(list) {
  const p = host.report.pipeline;
  const served = (p && p.manifest && p.manifest.model) || ((host.report.boot.events || []).find((e) => e.type === 'model') || {}).value;
  const own = (list.models || []).find((m) => m.model === served);
  const t = own ? own.prices : list.default;
  if (!t) return `This host bills each request to an escrow on TON, and lists no price for ${served}.`;
  return `This host bills each request to an escrow on TON: ${served} costs ${ton(t.prompt_per_million)} per million prompt tokens, ${ton(t.completion_per_million)} per million completion tokens.`;
}

async function verifyHost() {
  document.body.dataset.state = 'verifying';
  try {
    const verifier = {};
    if (trustSimRoot) verifier.trust_sim_root = trustSimRoot;
    if (policy) verifier.policy = JSON.parse(policy);
    if (strict) verifier.strict = true;
    host = await connect({ baseURL: '', pipeline, verifier });
  } catch (e) {
    document.body.dataset.state = 'broken';
    setStatus($('verify-status'), `Do not use this host: ${describeError(e)}`, 'fail');
    showVerified(e && e.report, null);
    return;
  }
  showVerified(host.report, host.suite);
  setStatus($('verify-status'), 'Verified: this browser checked the host\'s evidence and seals every message to its key.', 'ok');
  // A host that bills has a price list signed by the settlement key its evidence measures.
  bills = Boolean(host.settlementKey);
  if (bills) {
    $('price').textContent = priceText(await host.priceList());
    $('funds').hidden = false;
    startWallet();
  } else {
    $('chat').hidden = false;
  }
  document.body.dataset.state = 'verified';
}

function startWallet() {
  const ui = window.TON_CONNECT_UI;
  const connector = new ui.TonConnect({
    manifestUrl: new URL('tonconnect-manifest.json', location.href).href,
    walletsListSource: new URL('wallets.json', location.href).href,
    analytics: { mode: 'off' },
  });
  const tonConnectUI = new ui.TonConnectUI({ connector, buttonRootId: 'ton-connect', analytics: { mode: 'off' } });
  tonConnectUI.onStatusChange((w) => {
    wallet = w;
    $('fund-button').disabled = !w;
    $('funds').dataset.wallet = w ? 'connected' : '';
    setStatus($('wallet-status'), w ? `Wallet ${w.account.address} connected.` : 'No wallet connected.');
    if (w) checkEscrow();
  });
  $('fund').addEventListener('submit', (ev) => {
    ev.preventDefault();
    fund(tonConnectUI);
  });
}

// fund asks the wallet to send the library's deposit message (the escrow's state init
// included, so the first deposit deploys it), then waits until the host sees the escrow.
async function fund(tonConnectUI) {
  const status = $('escrow-status');
  $('fund-button').disabled = true;
  status.dataset.state = 'funding';
  try {
    const amountNano = toNano($('deposit-amount').value);
    const dep = await host.escrowDeposit({ clientKey: await clientKey(), wallet: wallet.account.address, amountNano });
    localStorage.setItem(escrowKey(), dep.addressRaw);
    setStatus(status, `Confirm the deposit to escrow ${dep.address} in your wallet…`);
    await tonConnectUI.sendTransaction({
      validUntil: Math.floor(Date.now() / 1000) + DEPOSIT_VALID_SECONDS,
      messages: [{ address: dep.address, amount: dep.amount, stateInit: dep.stateInit, payload: dep.payload }],
    });
    setStatus(status, `Sent. Waiting until the host sees escrow ${dep.address}…`);
    await waitForEscrow();
  } catch (e) {
    status.dataset.state = 'error';
    setStatus(status, `The deposit failed: ${describeError(e)}`, 'fail');
  } finally {
    $('fund-button').disabled = !wallet;
  }
}

// escrowStatus is the host's view of this wallet's escrow, null when there is none the
// host sees funded and open.
async function escrowStatus() {
  const escrow = localStorage.getItem(escrowKey());
  if (!escrow) return null;
  const st = await host.escrowStatus({ clientKey: await clientKey(), escrow });
  return st && !st.closing && BigInt(st.unspent || '0') > 0n ? st : null;
}

const ton = (nano) => `${(Number(BigInt(nano || '0')) / 1e9).toFixed(3)} TON`;

function showEscrow(st) {
  const status = $('escrow-status');
  status.dataset.state = 'funded';
  status.dataset.account = st.account;
  setStatus(status, `Escrow funded: ${st.account}: deposited ${ton(st.deposited)}, unspent ${ton(st.unspent)}, charged ${ton(st.cumulative)}.`, 'ok');
  escrowReady = true;
  $('chat').hidden = false;
}

// checkEscrow shows an escrow that was funded before (a restored wallet).
async function checkEscrow() {
  try {
    const st = await escrowStatus();
    if (st) showEscrow(st);
  } catch {
    // Not seen by the host (yet): the user funds it.
  }
}

async function waitForEscrow() {
  const deadline = Date.now() + ESCROW_WAIT_MS;
  let last = null;
  while (Date.now() < deadline) {
    try {
      const st = await escrowStatus();
      if (st) {
        showEscrow(st);
        return;
      }
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, ESCROW_POLL_MS));
  }
  throw last || new Error('the host did not see the escrow in time');
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `message ${role}`;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  div.append(body);
  $('messages').append(div);
  return div;
}

async function ask(prompt) {
  history.push({ role: 'user', content: prompt });
  addMessage('user', prompt);
  const div = addMessage('assistant', '');
  const text = div.querySelector('.text');
  const proof = document.createElement('span');
  proof.className = 'proof';
  div.append(proof);
  div.dataset.state = 'streaming';
  let deltas = 0;
  const options = {
    onDelta: (t) => {
      deltas++;
      div.dataset.deltas = String(deltas);
      text.textContent += t;
    },
  };
  if (bills) options.pay = { clientKey: await clientKey(), escrow: localStorage.getItem(escrowKey()) };
  else if (initData) options.auth = `tma ${initData}`;
  try {
    const answer = await host.chat({ messages: history, stream: true, max_tokens: MAX_TOKENS }, options);
    const r = answer.receipt;
    showAnswer(div, answer, r ? `receipt verified: #${r.seq}, ${r.usage.prompt_tokens} + ${r.usage.completion_tokens} tokens, cost ${ton(r.cost)}, ${ton(r.cumulative)} so far` : 'no receipt');
    div.dataset.receipt = r ? 'verified' : 'none';
  } catch (e) {
    if (e && e.answer) {
      // The answer verified (opened, signed by the attested host key): only its bill
      // did not. Show it, and say plainly that its charge is not verified.
      showAnswer(div, e.answer, 'receipt not verified');
      div.dataset.receipt = 'unverified';
      const warning = document.createElement('p');
      warning.className = 'warning';
      warning.textContent = `The charge for this answer could not be verified (${describeError(e)}). ` +
        'The answer above is the host\'s own, signed by its attested key, and stays in the conversation: only its bill is in doubt. ' +
        (bills ? 'This app keeps no receipts: the escrow line above shows what the host has charged so far. ' : '') +
        'If this happens again, stop chatting with this host.';
      div.append(warning);
      if (bills) checkEscrow();
      return;
    }
    history.pop();
    div.dataset.state = 'error';
    proof.textContent = `Not answered: ${describeError(e)}`;
  }
}

// showAnswer shows a verified answer in div, its proof line the signature's verdict
// and receipt, and adds it to the conversation.
function showAnswer(div, answer, receipt) {
  div.querySelector('.text').textContent = answer.text;
  history.push({ role: 'assistant', content: answer.text });
  div.querySelector('.proof').textContent = `signature ${answer.signature}; ${receipt}`;
  div.dataset.signature = answer.signature;
  div.dataset.state = 'done';
}

function start() {
  postEvent('web_app_ready');
  postEvent('web_app_expand');
  if (user) $('user').textContent = `Signed in as ${user.first_name || ''}${user.username ? ` (@${user.username})` : ''}`;
  $('ask').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const prompt = $('prompt').value.trim();
    if (!prompt || !host || (bills && !escrowReady)) return;
    $('prompt').value = '';
    ask(prompt);
  });
  verifyHost();
}

start();
