// A queue's limits: per-key concurrency and rates (task starts per period, for the queue and per
// key), where the keys stand (leases per key, keys at their limit or out of starts), and, for
// admins, a form that replaces them all.

import { errorBox, flash, formatPeriod, h, num, periodMs, replace, table, timeEl } from './lib.js';
import { api, isAdmin } from './api.js';

// "key=value" per line → {key: parse(value)}; an error names the line.
function parseKeyLines(text, form, parse) {
  const out = {};
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.lastIndexOf('=');
    const key = at > 0 ? line.slice(0, at).trim() : '';
    if (!key) throw new Error(`line ${i + 1}: “${line}” is not ${form}`);
    try {
      out[key] = parse(line.slice(at + 1).trim(), line);
    } catch (e) {
      throw new Error(`line ${i + 1}: ${e.message}`);
    }
  }
  return out;
}

// "key=n" per line, as the form shows and reads the keys' own limits.
export function parseKeyLimits(text) {
  return parseKeyLines(text, 'key=number', (n, line) => {
    if (!/^\d+$/.test(n)) throw new Error(`“${line}” is not key=number`);
    return Number(n);
  });
}

// "N/PERIOD" (e.g. 100/1m, 5/500ms), as the CLI reads it → {starts, period_ms}.
export function parseRate(text) {
  const m = /^(\d+)\s*\/\s*(.*)$/.exec(text.trim());
  const period = m && periodMs(m[2]);
  if (period === null || period === undefined) throw new Error(`“${text.trim()}” is not a rate like 100/1m (units: ms, s, m, h, d)`);
  return { starts: Number(m[1]), period_ms: period };
}

// {starts, period_ms} → "N/PERIOD" in the largest unit that divides the period.
export function formatRate(r) {
  if (!r) return '';
  return `${r.starts}/${formatPeriod(r.period_ms)}`;
}

// "key=N/PERIOD" per line.
function parseKeyRates(text) {
  return parseKeyLines(text, 'key=N/PERIOD', (r) => parseRate(r));
}

function rateText(r) {
  return r ? `${num(r.starts)} per ${formatPeriod(r.period_ms)}` : '';
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
    const ownRates = Object.entries(l.key_rate || {});
    const rates = h('p', { id: 'rates-summary' },
      l.rate ? `At most ${rateText(l.rate)} in the queue` : 'No rate for the queue',
      l.rate_per_key ? `, ${rateText(l.rate_per_key)} per key` : ', none per key',
      ownRates.length ? `, ${ownRates.length} key${ownRates.length === 1 ? '' : 's'} with a rate of ${ownRates.length === 1 ? 'its' : 'their'} own` : '',
      `; ${num(l.keys_rate_limited || 0)} key${l.keys_rate_limited === 1 ? '' : 's'} out of starts now`,
      l.rate_limited_until_ms ? h('span', null, '; the queue starts its next task ', timeEl(l.rate_limited_until_ms)) : '',
      '.');
    const lastKey = l.last_served_key === '' ? 'a task without a key' : h('code', null, l.last_served_key);
    const fairness = h('p', { id: 'fairness-summary' },
      l.fair ? 'Fair: keys take turns within a priority' : 'Oldest first within a priority (not fair)',
      l.fair && l.last_served_key !== null && l.last_served_key !== undefined ? h('span', null, '; served last: ', lastKey) : '',
      '.');
    const rows = [...new Set([...own.map(([k]) => k), ...ownRates.map(([k]) => k), ...leased.map(([k]) => k)])].sort().map((k) => ({
      k, limit: l.key_concurrency[k] ?? l.concurrency_per_key, rate: (l.key_rate || {})[k] ?? l.rate_per_key, leased: l.leased_by_key[k] || 0,
    }));
    const keys = rows.length ? table([
      { label: 'Key', cell: (r) => h('code', null, r.k) },
      { label: 'Limit', cls: 'num', cell: (r) => (r.limit === null || r.limit === undefined ? '—' : num(r.limit)) },
      { label: 'Rate', cell: (r) => rateText(r.rate) || '—' },
      { label: 'Leased', cls: 'num', cell: (r) => num(r.leased) },
    ], rows, { caption: 'Keys with limits of their own or leased tasks' }) : null;
    replace(box, h('h2', null, 'Concurrency and rate limits'), summary, rates, fairness, keys, isAdmin() ? limitsForm(name, l, load) : null);
  };
  await load();
  return box;
}

function limitsForm(name, l, reload) {
  const perKey = h('input', { id: 'limit-per-key', type: 'number', min: '0', step: '1', inputmode: 'numeric', value: l.concurrency_per_key ?? '', placeholder: 'unlimited' });
  const own = h('textarea', { id: 'limit-keys', rows: '3', placeholder: 'openai=5' },
    Object.entries(l.key_concurrency || {}).map(([k, n]) => `${k}=${n}`).join('\n'));
  const rate = h('input', { id: 'limit-rate', type: 'text', value: formatRate(l.rate), placeholder: 'none, or e.g. 100/1m' });
  const ratePerKey = h('input', { id: 'limit-rate-per-key', type: 'text', value: formatRate(l.rate_per_key), placeholder: 'none, or e.g. 5/1s' });
  const ownRates = h('textarea', { id: 'limit-key-rates', rows: '3', placeholder: 'openai=60/1m' },
    Object.entries(l.key_rate || {}).map(([k, r]) => `${k}=${formatRate(r)}`).join('\n'));
  const fair = h('input', { id: 'limit-fair', type: 'checkbox' });
  fair.checked = !!l.fair;
  const result = h('div', { role: 'status', 'aria-live': 'polite' });
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save limits');
  const form = h('form', { class: 'settings', id: 'limits-form', novalidate: true }, h('fieldset', null,
    h('legend', null, 'Change the limits (empty: none)'),
    h('div', { class: 'grid' },
      h('div', { class: 'field' }, h('label', { for: 'limit-per-key' }, 'Leased at once per key'), perKey),
      h('div', { class: 'field' }, h('label', { for: 'limit-keys' }, 'Keys with their own limit (key=number per line)'), own),
      h('div', { class: 'field' }, h('label', { for: 'limit-rate' }, 'Task starts in the queue (N/period)'), rate),
      h('div', { class: 'field' }, h('label', { for: 'limit-rate-per-key' }, 'Task starts per key (N/period)'), ratePerKey),
      h('div', { class: 'field' }, h('label', { for: 'limit-key-rates' }, 'Keys with their own rate (key=N/period per line)'), ownRates),
      h('div', { class: 'field check' }, fair, h('label', { for: 'limit-fair' }, 'Fair: keys take turns within a priority'))),
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
    if (fair.checked) body.fair = true;
    for (const [input, read] of [
      [own, () => { body.key_concurrency = parseKeyLimits(own.value); }],
      [rate, () => { if (rate.value.trim()) body.rate = parseRate(rate.value); }],
      [ratePerKey, () => { if (ratePerKey.value.trim()) body.rate_per_key = parseRate(ratePerKey.value); }],
      [ownRates, () => { body.key_rate = parseKeyRates(ownRates.value); }],
    ]) {
      try {
        read();
      } catch (e) {
        replace(result, h('p', { class: 'msg error', role: 'alert' }, e.message));
        input.focus();
        return;
      }
    }
    save.disabled = true;
    try {
      await api('PUT', `/v1/queues/${encodeURIComponent(name)}/limits`, body);
      flash('ok', `Saved the limits of queue ${name}.`);
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
