// The API from the browser: the token (sessionStorage only), requests with their errors, the
// caller's role, and event streams read with fetch (EventSource cannot send a token), falling
// back to polling.

import { ApiError, TOKEN_KEY, json, session, truncate } from './lib.js';
import { needSignIn } from './app.js';

// ---------------------------------------------------------------- API


export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function authHeaders(extra) {
  const headers = Object.assign({}, extra);
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  return headers;
}

export async function errorOf(res) {
  const text = await res.text().catch(() => '');
  let code = `http_${res.status}`;
  let message = res.statusText || 'request failed';
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    if (text) message = truncate(text, 300);
  }
  return new ApiError(res.status, code, message);
}

export async function api(method, path, body, opts = {}) {
  const headers = authHeaders({ Accept: 'application/json' });
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `The server could not be reached (${e.message}).`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && !opts.noSignIn) needSignIn(err);
    throw err;
  }
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const isAdmin = () => !!session.me && session.me.role === 'admin';
export const mayRead = () => !!session.me && (session.me.role === 'admin' || session.me.role === 'reader');
// A token limited to some queues (calls that span every queue are refused to it).
export const restricted = () => !!session.me && ['queues', 'deny'].some((k) => (session.me[k] || []).length > 0);

// ---------------------------------------------------------------- server-sent events

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// Reads an SSE body: calls onEvent({event, id, data}) per block; resolves when the body ends.
export async function readSse(body, onEvent) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let ev = { event: '', data: [], id: null };
  const line = (l) => {
    if (l === '') {
      if (ev.data.length || ev.event) {
        let data = ev.data.join('\n');
        try { data = JSON.parse(data); } catch { /* keep the text */ }
        onEvent({ event: ev.event || 'message', id: ev.id, data });
      }
      ev = { event: '', data: [], id: null };
      return;
    }
    if (l.startsWith(':')) return;
    const i = l.indexOf(':');
    const field = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? '' : l.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') ev.event = value;
    else if (field === 'data') ev.data.push(value);
    else if (field === 'id') ev.id = value;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let m;
    while ((m = /\r\n|\n|\r/.exec(buf))) {
      if (m[0] === '\r' && m.index === buf.length - 1) break; // maybe half of \r\n
      line(buf.slice(0, m.index));
      buf = buf.slice(m.index + m[0].length);
    }
  }
}

// Follows an event stream with fetch (EventSource cannot send the token): resumes from the
// last id, and while the stream is down polls with poll() and says so in the indicator.
export function follow(ctx, path, { onEvent, poll, pollMs = 5000, indicator, finished }) {
  let lastId = null;
  let failures = 0;
  let timer = null;
  const show = (cls, text) => {
    if (!indicator) return;
    indicator.className = `live ${cls}`;
    indicator.textContent = text;
  };
  const startPolling = () => {
    if (timer || !poll) return;
    timer = setInterval(() => { if (ctx.alive) poll(); }, pollMs);
  };
  const stopPolling = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  ctx.cleanups.push(stopPolling);
  (async () => {
    show('connecting', 'Connecting to live updates…');
    while (ctx.alive) {
      let why = 'the stream ended';
      try {
        const sep = path.includes('?') ? '&' : '?';
        const url = lastId ? `${path}${sep}after=${encodeURIComponent(lastId)}` : path;
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (lastId) headers['Last-Event-ID'] = lastId;
        const res = await fetch(url, { headers, signal: ctx.signal, cache: 'no-store', credentials: 'omit' });
        if (!res.ok) {
          const err = await errorOf(res);
          if (res.status === 401) { needSignIn(err); return; }
          throw err;
        }
        failures = 0;
        stopPolling();
        show('on', 'Live');
        if (lastId && poll) poll(); // catch up on what changed while we were away
        await readSse(res.body, (ev) => {
          if (ev.id) lastId = ev.id;
          if (ev.event === 'heartbeat') return;
          onEvent(ev);
        });
      } catch (e) {
        if (!ctx.alive || e.name === 'AbortError') return;
        why = e instanceof ApiError ? e.toString() : (e.message || 'network error');
      }
      if (!ctx.alive) return;
      if (finished && finished()) {
        show('done', 'Finished: no more updates');
        return;
      }
      failures += 1;
      startPolling();
      const wait = Math.min(30000, 1000 * 2 ** Math.min(failures, 5));
      show('polling', `Live updates unavailable (${why}); polling every ${Math.round(pollMs / 1000)} s, reconnecting in ${Math.round(wait / 1000)} s`);
      await sleep(wait, ctx.signal);
    }
  })();
}
