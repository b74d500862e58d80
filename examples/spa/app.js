// The example server's API, called from a page on another origin. Start the server with
//   cargo run --example server -- --cors-origin http://127.0.0.1:8080
// serve this folder with
//   python3 -m http.server 8080 --bind 127.0.0.1 --directory examples/spa
// and open http://127.0.0.1:8080/?api=http://127.0.0.1:3000
'use strict';

const params = new URLSearchParams(location.search);
const API = (params.get('api') || 'http://127.0.0.1:3000').replace(/\/$/, '') + '/api/v1';
const isTab = location.pathname.endsWith('tab.html');
// The main page keeps its tokens in localStorage (as the spec's example does); the second tab in
// sessionStorage, which is per tab.
const storage = isTab ? sessionStorage : localStorage;

function log(line) {
  const el = document.getElementById('log');
  if (el) el.textContent += line + '\n';
}

/// Calls the API; `token` defaults to the stored access token. Returns what a script can read.
async function call(method, path, { token = storage.getItem('access_token'), body } = {}) {
  const headers = {};
  if (token) headers['Authorization'] = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let json = null;
  try { json = await response.json(); } catch (_) { /* not JSON */ }
  const result = { status: response.status, body: json, wwwAuthenticate: response.headers.get('WWW-Authenticate') };
  log(`${method} ${path} -> ${response.status} ${JSON.stringify(json)}`);
  return result;
}

async function login(email, password, device) {
  const result = await call('POST', '/auth/login', { token: null, body: { email, password, device_name: device } });
  if (result.status === 200) {
    storage.setItem('access_token', result.body.access_token);
    storage.setItem('refresh_token', result.body.refresh_token);
  }
  return result;
}

/// The spec's logout flow: POST, then clear storage; a 401 means the token was already invalid, and
/// storage is cleared anyway.
async function logout() {
  const result = await call('POST', '/auth/logout');
  if (result.status === 200 || result.status === 401) {
    storage.removeItem('access_token');
    storage.removeItem('refresh_token');
  }
  return { ...result, cleared: storage.getItem('access_token') === null && storage.getItem('refresh_token') === null };
}

async function refresh() {
  const result = await call('POST', '/auth/refresh', { token: storage.getItem('refresh_token') });
  if (result.status === 200) {
    storage.setItem('access_token', result.body.access_token);
    storage.setItem('refresh_token', result.body.refresh_token);
  }
  return result;
}

// The second tab: logs in on load, then answers "check" messages from the first tab.
if (isTab) {
  window.addEventListener('message', async (event) => {
    if (event.origin !== location.origin || event.data !== 'check') return;
    try {
      parent.postMessage({ tab: 'check', result: await call('GET', '/user') }, location.origin);
    } catch (error) {
      parent.postMessage({ tab: 'check', result: { error: String(error) } }, location.origin);
    }
  });
  login('demo@example.com', 'demo-password', 'tab 2').then(
    (result) => parent.postMessage({ tab: 'ready', result }, location.origin),
    (error) => parent.postMessage({ tab: 'ready', error: String(error) }, location.origin),
  );
}

/// The second tab's next message of `kind`, or an error after 10 seconds.
function fromTab(kind) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ error: 'no answer from tab 2' }), 10000);
    window.addEventListener('message', function listener(event) {
      if (event.origin === location.origin && event.data && event.data.tab === kind) {
        window.removeEventListener('message', listener);
        clearTimeout(timer);
        resolve(event.data);
      }
    });
  });
}

/// The whole flow, each step's outcome recorded for the browser test.
async function auto() {
  const results = {};
  const step = async (name, work) => {
    try { results[name] = await work(); } catch (error) { results[name] = { error: String(error) }; }
  };
  await step('login', async () => {
    const result = await login('demo@example.com', 'demo-password', 'tab 1');
    return { ...result, body: null, stored: !!storage.getItem('access_token') && !!storage.getItem('refresh_token') };
  });
  const tab = document.getElementById('tab');
  const tabReady = fromTab('ready');
  tab.src = 'tab.html' + location.search;
  await step('tab2_login', async () => (await tabReady).result || { error: 'tab 2 did not log in' });
  await step('user', () => call('GET', '/user'));
  await step('sessions', async () => {
    const result = await call('GET', '/auth/sessions');
    const data = (result.body && result.body.data) || [];
    return { status: result.status, names: data.map((s) => s.name), current: data.filter((s) => s.current).map((s) => s.name) };
  });
  const oldToken = storage.getItem('access_token');
  await step('logout', logout);
  await step('after_logout', () => call('GET', '/user', { token: oldToken }));
  await step('tab2_after_logout', async () => {
    const answer = fromTab('check');
    tab.contentWindow.postMessage('check', location.origin);
    return (await answer).result;
  });
  await step('logout_again', async () => {
    storage.setItem('access_token', oldToken); // a stale token left in storage
    return logout();
  });
  const out = document.getElementById('results');
  out.textContent = JSON.stringify(results, null, 2);
  out.dataset.done = 'true';
}

if (!isTab) {
  document.getElementById('api').textContent = API;
  document.getElementById('login').addEventListener('submit', (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    login(form.get('email'), form.get('password'), navigator.userAgent.slice(0, 60)).catch((e) => log(String(e)));
  });
  document.getElementById('user').addEventListener('click', () => call('GET', '/user').catch((e) => log(String(e))));
  document.getElementById('sessions').addEventListener('click', () => call('GET', '/auth/sessions').catch((e) => log(String(e))));
  document.getElementById('refresh').addEventListener('click', () => refresh().catch((e) => log(String(e))));
  document.getElementById('logout').addEventListener('click', () => logout().catch((e) => log(String(e))));
  if (params.has('auto')) auto();
}
