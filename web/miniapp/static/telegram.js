// The part of Telegram's Mini App protocol this app uses, in place of
// telegram.org/js/telegram-web-app.js: the page loads no code, and makes no request,
// but its own host's (README.md, "The sample Mini App"). Telegram's clients open a Mini
// App with its launch parameters in the URL's fragment (tgWebAppData: the init data;
// tgWebAppThemeParams: the user's colours) and take its events from
// TelegramWebviewProxy.postEvent (the mobile and desktop apps), window.external.notify
// (older Windows clients) or a message to the parent frame (web.telegram.org).

// launchKey keeps the launch parameters for a reload, which Telegram opens without them.
const launchKey = 'cocoon.telegramLaunch';

// maxLaunchChars bounds the launch parameters the app reads, from the URL or from
// sessionStorage. Telegram's are about 1-2 KB: init data (a user of a few short names,
// auth_date, a chat_instance, a start_param of at most 512 characters, a signature and
// a hash) and theme colours; percent-encoded names in non-Latin scripts and a chat
// object beside the user bring the worst case near 6 KB. 32 KiB is five times that.
// Anyone can send a user a link to the app with a fragment of megabytes: read whole,
// it was parsed twice and stored, which threw (sessionStorage holds about 5 MB; the
// thrown error stopped the app from loading) or held the tab for seconds.
export const maxLaunchChars = 32 * 1024;

// launchError says why the launch parameters were refused, '' if they were not.
export let launchError = '';

function launchParams() {
  const fragment = location.hash.slice(1);
  if (fragment.length > maxLaunchChars) {
    // Neither this fragment nor an earlier launch's: the URL is not the launch it claims.
    launchError = `The link that opened this app carries ${fragment.length} characters of launch parameters, more than the ${maxLaunchChars} Telegram's ever take: they were ignored. Open the app from Telegram again.`;
    return new URLSearchParams();
  }
  const params = new URLSearchParams(fragment);
  if (params.has('tgWebAppData')) {
    sessionStorage.setItem(launchKey, fragment);
    return params;
  }
  const stored = sessionStorage.getItem(launchKey) || '';
  return new URLSearchParams(stored.length > maxLaunchChars ? '' : stored);
}

const launch = launchParams();
if (launchError) {
  console.error(launchError);
  // Where the app says who is signed in (index.html), which stays as it is without a user.
  const where = document.getElementById('user');
  if (where) where.textContent = launchError;
}

// initData is the signed init data as Telegram gave it, '' outside Telegram: a
// credential the app sends only sealed (app.js).
export const initData = launch.get('tgWebAppData') || '';

// user is the Telegram user initData names, unverified (the host checks initData's
// signature), or null.
export const user = (() => {
  try {
    return JSON.parse(new URLSearchParams(initData).get('user'));
  } catch {
    return null;
  }
})();

// postEvent sends an event to the Telegram client that opened the app; outside
// Telegram it does nothing.
export function postEvent(type, data) {
  const message = JSON.stringify({ eventType: type, eventData: data });
  if (window.TelegramWebviewProxy) window.TelegramWebviewProxy.postEvent(type, JSON.stringify(data));
  else if (window.external && 'notify' in window.external) window.external.notify(message);
  else if (window.parent !== window) window.parent.postMessage(message, 'https://web.telegram.org');
}

// The user's colours, as the CSS variables app.css reads (--tg-theme-bg-color, ...).
try {
  const theme = JSON.parse(launch.get('tgWebAppThemeParams') || '{}');
  for (const [name, value] of Object.entries(theme)) {
    if (/^[a-z_]+$/.test(name) && /^#[0-9a-fA-F]{3,8}$/.test(value)) {
      document.documentElement.style.setProperty(`--tg-theme-${name.replace(/_/g, '-')}`, value);
    }
  }
} catch {
  // No theme, or not JSON: app.css's defaults.
}
