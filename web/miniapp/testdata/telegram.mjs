// Runs static/telegram.js under Node for each launch read as a JSON array from stdin,
// with the browser globals it reads stood in for, and prints a JSON array of what it
// made of each: {initData, user, launchError, stored, userText} or {error}. Run by
// telegram_test.go.
//
// A launch is {fragment, pad, stored}: the URL's fragment is fragment followed by pad
// characters 'A' (so that a fragment of megabytes need not go through a pipe), and
// stored is what sessionStorage holds for the app beforehand (null: nothing).
//
// sessionStorage holds at most 5,000,000 characters, keys and values, as browsers'
// do (about 5 MB), and throws QuotaExceededError past that.

const launchKey = 'cocoon.telegramLaunch';
const quota = 5_000_000;

class Storage {
  constructor(items) { this.items = new Map(items); }
  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }
  setItem(key, value) {
    let used = key.length + String(value).length;
    for (const [k, v] of this.items) if (k !== key) used += k.length + v.length;
    if (used > quota) throw new DOMException(`setting ${key} exceeded the quota`, 'QuotaExceededError');
    this.items.set(key, String(value));
  }
}

const launches = JSON.parse(await new Response(process.stdin).text());
const results = [];
for (const [i, l] of launches.entries()) {
  const userElement = { textContent: 'Not opened in Telegram.' };
  globalThis.location = { hash: `#${l.fragment}${'A'.repeat(l.pad || 0)}` };
  globalThis.sessionStorage = new Storage(l.stored == null ? [] : [[launchKey, l.stored]]);
  globalThis.document = {
    documentElement: { style: { setProperty() {} } },
    getElementById: (id) => (id === 'user' ? userElement : null),
  };
  globalThis.window = globalThis;
  console.error = () => {}; // what the app logs is not this test's output
  try {
    // A new query string evaluates the module afresh.
    const m = await import(`../static/telegram.js?launch=${i}`);
    results.push({
      initData: m.initData,
      user: m.user,
      launchError: m.launchError,
      stored: sessionStorage.getItem(launchKey),
      userText: userElement.textContent,
    });
  } catch (e) {
    results.push({ error: `${e.name}: ${e.message}` });
  }
}
process.stdout.write(JSON.stringify(results));
