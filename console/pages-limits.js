// A queue's per-key concurrency limits: what they are, where the keys stand (leases per key, keys
// at their limit), and, for admins, a form that replaces them.

import { errorBox, flash, h, num, replace, table } from './lib.js';
import { api, isAdmin } from './api.js';

// "key=n" per line, as the form shows and reads the keys' own limits.
export function parseKeyLimits(text) {
  const out = {};
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.lastIndexOf('=');
    const key = at > 0 ? line.slice(0, at).trim() : '';
    const n = at > 0 ? line.slice(at + 1).trim() : '';
    if (!key || !/^\d+$/.test(n)) throw new Error(`line ${i + 1}: “${line}” is not key=number`);
    out[key] = Number(n);
  }
  return out;
}

export async function limitsSection(ctx, name) {
  const box = h('section', { id: 'limits' }, h('p', null, 'Loading limits…'));
  const load = async () => {
    let l;
    try {
      l = await api('GET', `/v1/queues/${encodeURIComponent(name)}/limits`, undefined, { signal: ctx.signal });
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(box, errorBox(e, 'Could not load the limits'));
      return;
    }
    if (!ctx.alive) return;
    const own = Object.entries(l.key_concurrency || {});
    const leased = Object.entries(l.leased_by_key || {});
    const summary = h('p', { id: 'limits-summary' },
      l.concurrency_per_key === null || l.concurrency_per_key === undefined
        ? 'No limit for every key'
        : `At most ${num(l.concurrency_per_key)} leased per key`,
      own.length ? `, ${own.length} key${own.length === 1 ? '' : 's'} with a limit of ${own.length === 1 ? 'its' : 'their'} own` : '',
      `; ${num(l.keys_at_limit)} key${l.keys_at_limit === 1 ? '' : 's'} at the limit now.`);
    const rows = [...new Set([...own.map(([k]) => k), ...leased.map(([k]) => k)])].sort().map((k) => ({
      k, limit: l.key_concurrency[k] ?? l.concurrency_per_key, leased: l.leased_by_key[k] || 0,
    }));
    const keys = rows.length ? table([
      { label: 'Key', cell: (r) => h('code', null, r.k) },
      { label: 'Limit', cls: 'num', cell: (r) => (r.limit === null || r.limit === undefined ? '—' : num(r.limit)) },
      { label: 'Leased', cls: 'num', cell: (r) => num(r.leased) },
    ], rows, { caption: 'Keys with a limit of their own or leased tasks' }) : null;
    replace(box, h('h2', null, 'Concurrency limits'), summary, keys, isAdmin() ? limitsForm(name, l, load) : null);
  };
  await load();
  return box;
}

function limitsForm(name, l, reload) {
  const perKey = h('input', { id: 'limit-per-key', type: 'number', min: '0', step: '1', inputmode: 'numeric', value: l.concurrency_per_key ?? '', placeholder: 'unlimited' });
  const own = h('textarea', { id: 'limit-keys', rows: '3', placeholder: 'openai=5' },
    Object.entries(l.key_concurrency || {}).map(([k, n]) => `${k}=${n}`).join('\n'));
  const result = h('div', { role: 'status', 'aria-live': 'polite' });
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save limits');
  const form = h('form', { class: 'settings', id: 'limits-form', novalidate: true }, h('fieldset', null,
    h('legend', null, 'Change the limits (empty: none)'),
    h('div', { class: 'grid' },
      h('div', { class: 'field' }, h('label', { for: 'limit-per-key' }, 'Leased at once per key'), perKey),
      h('div', { class: 'field' }, h('label', { for: 'limit-keys' }, 'Keys with their own limit (key=number per line)'), own)),
    h('div', { class: 'actions' }, save)), result);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {};
    const v = perKey.value.trim();
    if (v !== '' && !/^\d+$/.test(v)) {
      replace(result, h('p', { class: 'msg error', role: 'alert' }, `“${v}” is not a whole number`));
      perKey.focus();
      return;
    }
    if (v !== '') body.concurrency_per_key = Number(v);
    try {
      body.key_concurrency = parseKeyLimits(own.value);
    } catch (e) {
      replace(result, h('p', { class: 'msg error', role: 'alert' }, e.message));
      own.focus();
      return;
    }
    save.disabled = true;
    try {
      await api('PUT', `/v1/queues/${encodeURIComponent(name)}/limits`, body);
      flash('ok', `Saved the concurrency limits of queue ${name}.`);
      await reload();
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(result, errorBox(e, 'Not saved'));
    } finally {
      save.disabled = false;
    }
  });
  return form;
}
