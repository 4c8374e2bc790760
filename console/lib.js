// The console's building blocks: constants, DOM helpers that never parse server text as HTML,
// formatting, feedback and tables.

// Who the caller is (GET /v1/whoami), once known.
export const session = { me: null };

/** An API refusal (status and code) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  toString() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

export const TOKEN_KEY = 'minion.console.token';
export const STATES = ['waiting', 'waiting_children', 'ready', 'delayed', 'leased', 'failed', 'succeeded', 'dead', 'cancelled', 'rejected'];
export const FINAL = new Set(['succeeded', 'dead', 'cancelled', 'rejected']);
export const RETRYABLE = new Set(['dead', 'cancelled', 'failed']);
export const STRATEGIES = ['round_robin', 'least_loaded', 'random', 'capability_best', 'latency_based', 'weighted_round_robin'];
export const QUEUE_FIELDS = [
  ['max_attempts', 'Max attempts', ''],
  ['lease_ms', 'Lease', 'ms'],
  ['retry_base_ms', 'Retry base delay', 'ms'],
  ['retry_max_ms', 'Retry max delay', 'ms'],
  ['stall_timeout_ms', 'Stall timeout', 'ms'],
  ['dedup_ttl_ms', 'Idempotency key TTL', 'ms'],
  ['retention_ms', 'Retention of finished tasks', 'ms'],
  ['payload_bytes_max', 'Payload size limit', 'bytes'],
];
export const PAGE_SIZE = 50;

export const $app = document.getElementById('app');
export const $nav = document.getElementById('nav');
export const $who = document.getElementById('who');
export const $flash = document.getElementById('flash');

// ---------------------------------------------------------------- DOM helpers

// h('a', {href: '#/x', class: 'c', onclick: f}, 'text', child, [more]) — text is always a text node.
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'style') throw new Error('inline styles are not allowed');
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'for') el.htmlFor = v;
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected' || k === 'required') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, kids);
  return el;
}

export function append(el, ...kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...kids) {
  clear(el);
  return append(el, kids);
}

// ---------------------------------------------------------------- formatting

export function dur(ms) {
  if (ms === null || ms === undefined) return '—';
  ms = Math.max(0, Math.round(ms));
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return `${hr} h ${m % 60} min`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

const UNITS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 };

// "PERIOD" as the CLI reads it (500ms, 10s, 1m, 2h, 1d; "m" alone is 1m) → ms, or null.
export function periodMs(text) {
  const m = /^(\d*)\s*(ms|s|m|h|d)$/.exec(text.trim());
  return m ? Number(m[1] || '1') * UNITS[m[2]] : null;
}

// ms → "PERIOD" in the largest unit that divides it.
export function formatPeriod(ms) {
  const [unit, size] = Object.entries(UNITS).reverse().find(([, u]) => ms % u === 0);
  return `${ms / size}${unit}`;
}

export function rel(ms) {
  const d = Date.now() - ms;
  if (Math.abs(d) < 1000) return 'just now';
  return d > 0 ? `${dur(d)} ago` : `in ${dur(-d)}`;
}

export function absTime(ms) {
  const d = new Date(ms);
  return `${d.toLocaleString()} (${d.toISOString()})`;
}

// A time shown relative, with the absolute time in its title; refreshed every 10 s.
export function timeEl(ms) {
  if (ms === null || ms === undefined) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: new Date(ms).toISOString(), title: absTime(ms), 'data-ms': ms }, rel(ms));
}

setInterval(() => {
  for (const t of document.querySelectorAll('time[data-ms]')) t.textContent = rel(Number(t.dataset.ms));
}, 10000);

// An age measured by the server ("x ms ago"): the absolute time is estimated from now.
export function ageEl(agoMs) {
  if (agoMs === null || agoMs === undefined) return h('span', { class: 'muted' }, '—');
  return h('span', { title: absTime(Date.now() - agoMs) }, dur(agoMs));
}

export function num(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString();
}

export function json(v) {
  return JSON.stringify(v, null, 2);
}

export function stateBadge(state) {
  return h('span', { class: `badge state-${String(state).replace(/[^a-z_]/g, '')}` }, state);
}

export function truncate(s, n) {
  s = String(s ?? '');
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

// Trace id of a W3C traceparent (version-traceid-spanid-flags).
export function traceId(tp) {
  if (!tp) return null;
  const parts = String(tp).split('-');
  return parts.length >= 4 ? parts[1] : String(tp);
}


// ---------------------------------------------------------------- feedback

export function flash(kind, ...msg) {
  replace($flash, h('div', { class: `msg ${kind}` }, ...msg,
    h('button', { type: 'button', class: 'linkish', 'aria-label': 'Dismiss message', onclick: () => clear($flash) }, '×')));
}

export function errorBox(e, what) {
  const text = e instanceof ApiError ? e.toString() : String(e && e.message ? e.message : e);
  const hint = e && e.status === 403 ? ` Your token's role (${session.me ? session.me.role : '?'}) does not allow this.` : '';
  return h('p', { class: 'msg error', role: 'alert' }, what ? `${what}: ` : '', text, hint);
}

// ---------------------------------------------------------------- tables

// columns: [{label, cell: row => node|string, cls}]
export function table(columns, rows, opts = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, opts.empty || 'Nothing here.');
  return h('div', { class: 'table-wrap' },
    h('table', { class: opts.cls || null },
      opts.caption ? h('caption', { class: 'sr-only' }, opts.caption) : null,
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.cls || null }, c.head || c.label)))),
      h('tbody', null, rows.map((r) => h('tr', null, columns.map((c) => h('td', { class: c.cls || null, 'data-label': c.label }, c.cell(r))))))));
}

// Client-side paging of an array already fetched.
export function pagedTable(columns, rows, opts = {}) {
  const box = h('div');
  let at = 0;
  const render = () => {
    const slice = rows.slice(at, at + PAGE_SIZE);
    replace(box, table(columns, slice, opts),
      rows.length > PAGE_SIZE ? h('div', { class: 'pager' },
        h('button', { type: 'button', disabled: at === 0, onclick: () => { at = Math.max(0, at - PAGE_SIZE); render(); } }, '← Previous'),
        h('span', null, `${at + 1}–${Math.min(rows.length, at + PAGE_SIZE)} of ${rows.length}`),
        h('button', { type: 'button', disabled: at + PAGE_SIZE >= rows.length, onclick: () => { at += PAGE_SIZE; render(); } }, 'Next →')) : null);
  };
  render();
  return box;
}

// Server-side cursor paging: fetchPage(after) → {rows, next}; renderRows(rows) → node.
export function cursorPager(ctx, fetchPage, renderRows) {
  const box = h('div', { class: 'cursor-pager' });
  const stack = [null];
  let idx = 0;
  let last = null;
  const load = async () => {
    let res;
    try {
      res = await fetchPage(stack[idx]);
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(box, errorBox(e, 'Could not load'));
      return;
    }
    if (!ctx.alive) return;
    last = res;
    const hasNext = res.next !== null && res.next !== undefined && res.rows.length > 0;
    replace(box, renderRows(res.rows), h('div', { class: 'pager' },
      h('button', { type: 'button', disabled: idx === 0, onclick: () => { idx -= 1; load(); } }, '← Previous'),
      h('span', null, `Page ${idx + 1}${res.rows.length ? ` · ${res.rows.length} shown` : ''}`),
      h('button', { type: 'button', disabled: !hasNext, onclick: () => { stack[idx + 1] = res.next; stack.length = idx + 2; idx += 1; load(); } }, 'Next →')));
  };
  return { el: box, load, get last() { return last; } };
}
