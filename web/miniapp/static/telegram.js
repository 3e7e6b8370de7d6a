// The part of Telegram's Mini App protocol this app uses, in place of
// telegram.org/js/telegram-web-app.js: the page loads no code, and makes no request,
// but its own host's (README.md, "The sample Mini App"). Telegram's clients open a Mini
// App with its launch parameters in the URL's fragment (tgWebAppData: the init data;
// tgWebAppThemeParams: the user's colours) and take its events from
// TelegramWebviewProxy.postEvent (the mobile and desktop apps), window.external.notify
// (older Windows clients) or a message to the parent frame (web.telegram.org).

// launchKey keeps the launch parameters for a reload, which Telegram opens without them.
const launchKey = 'cocoon.telegramLaunch';

function launchParams() {
  const fragment = location.hash.slice(1);
  if (new URLSearchParams(fragment).has('tgWebAppData')) {
    sessionStorage.setItem(launchKey, fragment);
    return new URLSearchParams(fragment);
  }
  return new URLSearchParams(sessionStorage.getItem(launchKey) || '');
}

const launch = launchParams();

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
