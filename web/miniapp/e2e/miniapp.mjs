// Drives the sample Mini App (web/miniapp) in Debian's headless Chromium (never a
// downloaded browser) as a Telegram user would, and prints, as one JSON object on
// stdout, what the app showed. cmd/cocoon/miniapp_test.go runs it and judges the result.
//
//   node miniapp.mjs SCENARIO.json
//
// SCENARIO.json is {"url", "origin", "telegram": {"init_data"}, "wallet": {"address",
// "public_key", "state_init", "signer"}, "wallets_file", "deposit", "prompt"}. On a host
// that bills, the wallet is connected and the escrow funded before the chat; on one that
// does not, the app chats at once.
//
// Only Telegram's and the wallet's sides are simulated; the app's code is what the host
// serves. Telegram: the app is opened as Telegram's desktop app opens a Mini App, with
// the launch parameters (the test's init data) in the URL's fragment and
// window.TelegramWebviewProxy taking its events. The wallet: an injected TON
// Connect wallet (the JS bridge a wallet's in-app browser or extension puts on window),
// whose sendTransaction is handed to the Go test (POST to "signer"), which signs and sends
// exactly the requested messages from a funded wallet on the local network and answers
// the external message's BOC. The wallets list is wallets_file, served in place of the
// app's. Every request the page (or a worker of it) makes is recorded ("requests"); one
// that leaves the origin is refused and reported ("outside"), and so is every request
// the content security policy blocked ("cspViolations"): the app must make neither.
//
// With MINIAPP_SCREENSHOT=FILE set, the page as it was at the end is saved there.
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

// Verification loads and runs the verifier compiled to WebAssembly; the escrow waits for
// the host to see a transaction; a loaded 2-core machine is slow at both.
const VERIFY_TIMEOUT_MS = 180000;
const STEP_TIMEOUT_MS = 60000;
const ESCROW_TIMEOUT_MS = 300000;
const ANSWER_TIMEOUT_MS = 180000;

const BRIDGE_KEY = 'cocoontestwallet';
const WALLET_NAME = 'Cocoon Test Wallet';

const s = JSON.parse(await readFile(process.argv[2], 'utf8'));

// telegramClient runs in the page before its scripts: where Telegram's desktop and
// mobile apps take a Mini App's events (the app's web_app_ready among them), and where
// the page reports what its content security policy blocked.
function telegramClient() {
  window.TelegramWebviewProxy = { postEvent(type) { (window.__telegramEvents ||= []).push(type); } };
  document.addEventListener('securitypolicyviolation', (e) => {
    window.cocoonTestCSPViolation(`${e.effectiveDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
  });
}

// launchURL is the app's URL as Telegram's desktop app opens it: the launch parameters
// in its fragment.
function launchURL(url, initData) {
  if (!initData) return url;
  return `${url}#${new URLSearchParams({ tgWebAppData: initData, tgWebAppVersion: '8.0', tgWebAppPlatform: 'tdesktop', tgWebAppThemeParams: '{}' })}`;
}

// injectWallet runs in the page before its scripts: the TON Connect JS bridge of an
// injected wallet (protocol v2), whose every request goes to the test through
// window.cocoonTestWalletSend.
function injectWallet({ key, name, address, publicKey, stateInit }) {
  const device = {
    // appName is the wallets list's app_name, by which the UI finds the wallet's name and icon.
    platform: 'linux', appName: key, appVersion: '1.0.0', maxProtocolVersion: 2,
    features: ['SendTransaction', { name: 'SendTransaction', maxMessages: 4 }],
  };
  let connected = false;
  let nextEvent = 1;
  const connectEvent = () => ({
    event: 'connect', id: nextEvent++,
    payload: { device, items: [{ name: 'ton_addr', address, network: '-239', publicKey, walletStateInit: stateInit }] },
  });
  window[key] = { tonconnect: {
    deviceInfo: device,
    walletInfo: { name, app_name: key, image: 'data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E', about_url: 'https://example.invalid', platforms: ['chrome'] },
    protocolVersion: 2,
    isWalletBrowser: false,
    async connect(protocolVersion, request) {
      window.__walletConnectRequest = request;
      connected = true;
      return connectEvent();
    },
    async restoreConnection() {
      return connected ? connectEvent() : { event: 'connect_error', id: nextEvent++, payload: { code: 0, message: 'not connected' } };
    },
    async send(message) {
      if (message.method === 'disconnect') {
        connected = false;
        return { id: message.id, result: {} };
      }
      if (message.method !== 'sendTransaction') {
        return { id: message.id, error: { code: 400, message: `the test wallet does not do ${message.method}` } };
      }
      try {
        return { id: message.id, result: await window.cocoonTestWalletSend(message.params[0]) };
      } catch (e) {
        return { id: message.id, error: { code: 0, message: String(e && e.message || e) } };
      }
    },
    listen() { return () => {}; },
  } };
}

// shown reads what the app shows, from the DOM as its user sees it.
function shown() {
  const text = (sel) => { const el = document.querySelector(sel); return el ? el.textContent : ''; };
  const answer = document.querySelector('.message.assistant');
  return {
    state: document.body.dataset.state || '',
    user: text('#user'),
    verifyStatus: text('#verify-status'),
    lines: Array.from(document.querySelectorAll('#verified tr'), (r) => ({
      line: r.dataset.line || '', verdict: r.dataset.verdict || '', name: r.cells[0].textContent, value: r.cells[1].textContent,
    })),
    checks: Array.from(document.querySelectorAll('#checks tr'), (r) => ({ verdict: r.dataset.verdict || '', name: r.cells[0].textContent, value: r.cells[1].textContent })),
    price: text('#price'),
    walletStatus: text('#wallet-status'),
    escrowState: (document.querySelector('#escrow-status') || {}).dataset?.state || '',
    escrowStatus: text('#escrow-status'),
    telegramReady: (window.__telegramEvents || []).includes('web_app_ready'),
    answer: answer ? {
      state: answer.dataset.state || '', deltas: Number(answer.dataset.deltas || 0), signature: answer.dataset.signature || '',
      receipt: answer.dataset.receipt || '', text: answer.querySelector('.text').textContent, proof: answer.querySelector('.proof').textContent,
      warning: (answer.querySelector('.warning') || {}).textContent || '',
    } : null,
    question: text('.message.user'),
  };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const out = { errors: [], requests: [], outside: [], cspViolations: [], failedResponses: [], walletRequests: [] };
let page;
try {
  // A desktop: TON Connect's UI lists injected (extension) wallets there; on a phone it
  // lists only mobile ones.
  const context = await browser.newContext();
  const walletsList = await readFile(s.wallets_file, 'utf8');
  // Every request, as the browser is about to send it (data: URLs are not requests).
  context.on('request', (r) => out.requests.push(r.url()));
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.split('?')[0] === `${s.origin}/app/wallets.json`) {
      return route.fulfill({ contentType: 'application/json', body: walletsList });
    }
    if (url.startsWith(`${s.origin}/`)) return route.continue();
    out.outside.push(`${route.request().resourceType()} ${url}`);
    return route.abort();
  });
  await context.exposeFunction('cocoonTestCSPViolation', (v) => { out.cspViolations.push(v); });
  await context.addInitScript(telegramClient);
  await context.exposeFunction('cocoonTestWalletSend', async (request) => {
    out.walletRequests.push(JSON.parse(request));
    const r = await fetch(s.wallet.signer, { method: 'POST', body: request });
    const body = await r.text();
    if (!r.ok) throw new Error(`the test's wallet refused: ${body}`);
    return body;
  });
  await context.addInitScript(injectWallet, {
    key: BRIDGE_KEY, name: WALLET_NAME, address: s.wallet.address, publicKey: s.wallet.public_key, stateInit: s.wallet.state_init,
  });
  page = await context.newPage();
  // Errors until the last step was read: closing the page aborts TON Connect's bridge.
  let closing = false;
  page.on('pageerror', (e) => closing || out.errors.push(`page error: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) out.failedResponses.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !closing) out.errors.push(`console: ${m.text()}`);
  });

  await page.goto(launchURL(s.url, s.telegram.init_data));
  await page.waitForSelector('body[data-state="verified"], body[data-state="broken"]', { timeout: VERIFY_TIMEOUT_MS });
  out.verified = await page.evaluate(shown);
  const bills = out.verified.state === 'verified' && await page.evaluate(() => !document.querySelector('#funds').hidden);
  if (bills) {
    // Connect: TON Connect's own button, then the injected wallet in its modal.
    await page.locator('#ton-connect button').first().click({ timeout: STEP_TIMEOUT_MS });
    await page.getByText(WALLET_NAME).first().click({ timeout: STEP_TIMEOUT_MS });
    await page.waitForSelector('#funds[data-wallet="connected"]', { timeout: STEP_TIMEOUT_MS });
    // Fund the escrow: the app asks the wallet; the test's wallet sends on chain.
    await page.fill('#deposit-amount', s.deposit);
    await page.click('#fund-button');
    await page.waitForSelector('#escrow-status[data-state="funded"], #escrow-status[data-state="error"]', { timeout: ESCROW_TIMEOUT_MS });
    out.funded = await page.evaluate(shown);
  }
  // Chat: on a host that does not bill at once, on one that does once the escrow is funded.
  if (out.verified.state === 'verified' && (!bills || out.funded.escrowState === 'funded')) {
    await page.fill('#prompt', s.prompt);
    await page.click('#send');
    await page.waitForSelector('.message.assistant[data-state="done"], .message.assistant[data-state="error"]', { timeout: ANSWER_TIMEOUT_MS });
    out.answered = await page.evaluate(shown);
  }
  out.walletConnectRequest = await page.evaluate(() => window.__walletConnectRequest || null);
  out.telegramEvents = await page.evaluate(() => window.__telegramEvents || []);
  if (process.env.MINIAPP_SCREENSHOT) await page.screenshot({ path: process.env.MINIAPP_SCREENSHOT, fullPage: true });
  closing = true;
  await context.close();
} catch (e) {
  out.failure = String(e && e.stack || e);
  // What the app showed when it stopped, to tell why.
  out.last = page ? await page.evaluate(shown).catch(() => null) : null;
  if (page && process.env.MINIAPP_SCREENSHOT) await page.screenshot({ path: process.env.MINIAPP_SCREENSHOT, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
