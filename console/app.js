// Minion's web console: ES modules, no build step, no dependencies. This one signs in and out
// and routes (by the URL's hash) to the pages.
//
// Rules the console keeps (the server's CSP and the console's contract):
// - every server-provided string reaches the page through text nodes or attributes set by DOM
//   APIs, never through innerHTML;
// - no inline styles (CSP style-src 'self'): classes from app.css, or el.style.prop from code;
// - the API token lives in sessionStorage only: never in a URL, never logged.

import { $app, $flash, TOKEN_KEY, append, clear, errorBox, flash, h, replace, session } from './lib.js';
import { api, token } from './api.js';
import { deadPage, taskPage, tasksPage } from './pages-tasks.js';
import { settingsPage, tokensPage } from './pages-admin.js';
import { schedulesPage } from './pages-schedules.js';
import { adaptersPage, agentsPage, auditPage, autoscalerPage, clusterPage, notFound, overviewPage, queuePage, renderChrome } from './pages-ops.js';

// ---------------------------------------------------------------- sign in / out

let signingIn = false;
// The current page's context: its abort signal and clean-ups.
let page = null;

export function needSignIn(err) {
  if (signingIn) return;
  const had = !!token();
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
  session.me = null;
  showSignIn(had ? `The token was refused (${err ? err.message : 'unauthorized'}). Sign in again.` : null);
}

function showSignIn(message) {
  signingIn = true;
  if (page) page.close();
  page = null;
  renderChrome('');
  clear($flash);
  document.title = 'Sign in · Minion';
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  const result = h('div', { role: 'status', 'aria-live': 'polite' }, message ? h('p', { class: 'msg error' }, message) : null);
  const submit = h('button', { type: 'submit', class: 'primary', id: 'signin' }, 'Sign in');
  const form = h('form', { class: 'signin', id: 'signin-form' },
    h('h1', null, 'Sign in'),
    h('p', null, 'This node requires an API token. It is kept in this tab only (sessionStorage) and sent as a bearer token.'),
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'API token'), input),
    h('div', { class: 'actions' }, submit), result);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) { replace(result, h('p', { class: 'msg error', role: 'alert' }, 'Enter a token.')); return; }
    submit.disabled = true;
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch { /* private mode */ }
    try {
      session.me = await api('GET', '/v1/whoami', undefined, { noSignIn: true });
      signingIn = false;
      input.value = '';
      route();
    } catch (e) {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
      replace(result, h('p', { class: 'msg error', role: 'alert' }, `Not signed in: ${e}`));
      submit.disabled = false;
      input.focus();
    }
  });
  replace($app, form);
  input.focus();
}

export function signOut() {
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
  session.me = null;
  showSignIn(null);
  flash('ok', 'Signed out: the token was removed from this tab.');
}

// ---------------------------------------------------------------- router

const ROUTES = [
  [/^\/$/, (ctx) => overviewPage(ctx)],
  [/^\/queues\/([^/]+)$/, (ctx, m) => queuePage(ctx, decodeURIComponent(m[1]))],
  [/^\/tasks\/(\d+)$/, (ctx, m) => taskPage(ctx, m[1])],
  [/^\/tasks$/, (ctx, m, p) => tasksPage(ctx, p)],
  [/^\/dead$/, (ctx, m, p) => deadPage(ctx, p)],
  [/^\/agents$/, (ctx) => agentsPage(ctx)],
  [/^\/cluster$/, (ctx) => clusterPage(ctx)],
  [/^\/autoscaler$/, (ctx, m, p) => autoscalerPage(ctx, p)],
  [/^\/adapters$/, (ctx) => adaptersPage(ctx)],
  [/^\/schedules$/, (ctx) => schedulesPage(ctx)],
  [/^\/audit$/, (ctx) => auditPage(ctx)],
  [/^\/tokens$/, (ctx) => tokensPage(ctx)],
  [/^\/settings$/, (ctx) => settingsPage(ctx)],
];

function newPage() {
  if (page) page.close();
  const ctl = new AbortController();
  const ctx = {
    signal: ctl.signal,
    alive: true,
    cleanups: [],
    close() {
      this.alive = false;
      ctl.abort();
      for (const f of this.cleanups) { try { f(); } catch { /* ignore */ } }
    },
  };
  page = ctx;
  return ctx;
}

export async function route() {
  const raw = location.hash.replace(/^#/, '');
  const qi = raw.indexOf('?');
  const path = (qi < 0 ? raw : raw.slice(0, qi)) || '/';
  const params = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
  if (!session.me) {
    try {
      session.me = await api('GET', '/v1/whoami', undefined, { noSignIn: true });
    } catch (e) {
      if (e.status === 401) { needSignIn(e); return; }
      replace($app, errorBox(e, 'Could not reach the node'), h('p', null, h('button', { type: 'button', onclick: () => route() }, 'Try again')));
      return;
    }
  }
  signingIn = false;
  const ctx = newPage();
  renderChrome(path);
  clear($app);
  const hit = ROUTES.map(([re, fn]) => [re.exec(path), fn]).find(([m]) => m);
  try {
    if (hit) await hit[1](ctx, hit[0], params);
    else notFound(ctx, path);
  } catch (e) {
    if (!ctx.alive || e.name === 'AbortError') return;
    append($app, errorBox(e, 'This page failed'));
  }
}

let lastHash = location.hash;
window.addEventListener('hashchange', () => {
  if (location.hash !== lastHash) clear($flash);
  lastHash = location.hash;
  route();
  $app.focus({ preventScroll: true });
});
const skip = document.querySelector('a.skip');
if (skip) skip.addEventListener('click', (ev) => { ev.preventDefault(); $app.focus(); });

route();
