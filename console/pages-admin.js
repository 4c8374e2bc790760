// The admin's pages: API tokens (create, shown once; revoke) and the cluster's engine settings
// (the defaults of every queue; readers may look, admins change them).

import { $app, QUEUE_FIELDS, STRATEGIES, append, clear, errorBox, flash, h, pagedTable, replace, table, timeEl } from './lib.js';
import { api, isAdmin, mayRead } from './api.js';
import { heading } from './pages-ops.js';

const ROLES = ['admin', 'producer', 'worker', 'reader', 'metrics'];

// "a, b ,c" -> ['a', 'b', 'c']
function list(text) {
  return text.split(',').map((x) => x.trim()).filter(Boolean);
}

function patterns(xs) {
  return xs && xs.length ? xs.map((x) => h('span', { class: 'tag' }, x)) : h('span', { class: 'muted' }, 'all');
}

export async function tokensPage(ctx) {
  append($app, heading('API tokens'));
  if (!isAdmin()) {
    append($app, h('p', { class: 'msg' }, 'Tokens are managed with an admin token.'));
    return;
  }
  const body = h('div', null, h('p', null, 'Loading…'));
  const created = h('div', { role: 'status', 'aria-live': 'polite' });
  let all = [];
  const load = async () => {
    try {
      const r = await api('GET', '/v1/tokens', undefined, { signal: ctx.signal });
      all = (r.tokens || []).slice().sort((a, b) => Number(b.active) - Number(a.active) || b.created_ms - a.created_ms);
      render();
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(body, errorBox(e, 'Could not list the tokens'));
    }
  };
  const revoke = async (t, btn) => {
    if (!window.confirm(`Revoke token “${t.name}” (${t.id})? Every node refuses it from now on.`)) return;
    btn.disabled = true;
    try {
      await api('DELETE', `/v1/tokens/${encodeURIComponent(t.id)}`);
      flash('ok', `Revoked token ${t.name} (${t.id}).`);
      await load();
    } catch (e) {
      if (e.name === 'AbortError') return;
      flash('error', `Could not revoke token ${t.name}: ${e}`);
      btn.disabled = false;
    }
  };
  const cols = [
    { label: 'Name', cell: (t) => h('span', null, h('strong', null, t.name), h('span', { class: 'muted' }, ` ${t.id}`)) },
    { label: 'Role', cell: (t) => t.role },
    { label: 'Queues', cls: 'wrap', cell: (t) => patterns(t.queues) },
    { label: 'Denied', cls: 'wrap', cell: (t) => (t.deny && t.deny.length ? t.deny.map((x) => h('span', { class: 'tag' }, x)) : h('span', { class: 'muted' }, 'none')) },
    { label: 'Agents', cls: 'wrap', cell: (t) => patterns(t.agents) },
    { label: 'Created', cell: (t) => h('span', null, timeEl(t.created_ms), h('span', { class: 'muted' }, ` by ${t.created_by}`)) },
    { label: 'Expires', cell: (t) => (t.expires_ms ? timeEl(t.expires_ms) : h('span', { class: 'muted' }, 'never')) },
    { label: 'State', cell: (t) => (t.active ? h('span', { class: 'badge state-succeeded' }, 'active') : h('span', { class: 'badge state-cancelled' }, t.revoked_ms ? 'revoked' : 'expired')) },
    { label: 'Actions', cell: (t) => (t.active ? h('button', { type: 'button', class: 'small danger', 'data-revoke': t.id, onclick: (ev) => revoke(t, ev.currentTarget) }, 'Revoke') : '') },
  ];
  function render() {
    replace(body, pagedTable(cols, all, { empty: 'No tokens yet (the bootstrap admin token is not listed).', caption: 'API tokens' }));
  }

  const f = {
    name: h('input', { id: 'tok-name', name: 'name', required: true, autocomplete: 'off' }),
    role: h('select', { id: 'tok-role', name: 'role' }, ROLES.map((r) => h('option', { value: r, selected: r === 'producer' }, r))),
    queues: h('input', { id: 'tok-queues', name: 'queues', placeholder: 'all (e.g. orders.*, mail)', autocomplete: 'off' }),
    deny: h('input', { id: 'tok-deny', name: 'deny', placeholder: 'none', autocomplete: 'off' }),
    agents: h('input', { id: 'tok-agents', name: 'agents', placeholder: 'any (e.g. gpu-*)', autocomplete: 'off' }),
    hours: h('input', { id: 'tok-hours', name: 'hours', type: 'number', min: '1', step: '1', placeholder: 'never' }),
  };
  const field = (id, label, el) => h('div', { class: 'field' }, h('label', { for: id }, label), el);
  const save = h('button', { type: 'submit', class: 'primary' }, 'Create token');
  const form = h('form', { class: 'settings', novalidate: true }, h('fieldset', null, h('legend', null, 'New token'),
    h('div', { class: 'grid' },
      field('tok-name', 'Name', f.name), field('tok-role', 'Role', f.role), field('tok-queues', 'Queue patterns', f.queues),
      field('tok-deny', 'Denied queue patterns', f.deny), field('tok-agents', 'Agent patterns (workers)', f.agents),
      field('tok-hours', 'Expires after (hours)', f.hours)),
    h('div', { class: 'actions' }, save)));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(created);
    const name = f.name.value.trim();
    if (!name) { replace(created, h('p', { class: 'msg error', role: 'alert' }, 'A token needs a name.')); f.name.focus(); return; }
    const body = { name, role: f.role.value, queues: list(f.queues.value), deny: list(f.deny.value), agents: list(f.agents.value) };
    const hours = f.hours.value.trim();
    if (hours) {
      if (!/^\d+$/.test(hours) || Number(hours) < 1) { replace(created, h('p', { class: 'msg error', role: 'alert' }, `“${hours}” is not a whole number of hours`)); f.hours.focus(); return; }
      body.expires_in_ms = Number(hours) * 3600000;
    }
    save.disabled = true;
    try {
      const out = await api('POST', '/v1/tokens', body);
      // Shown once, here only: never stored, logged or put in a URL by the console.
      const secret = h('input', { id: 'tok-secret', readonly: true, value: out.token, 'aria-label': 'The new token', class: 'secret' });
      replace(created, h('div', { class: 'msg ok' },
        h('p', null, `Created token ${out.name || name} (${out.id}), role ${out.role || body.role}. Copy it now: it is not shown again.`),
        secret,
        h('button', { type: 'button', onclick: async () => { secret.select(); try { await navigator.clipboard.writeText(secret.value); flash('ok', 'Copied.'); } catch { flash('error', 'Could not copy; select the text and copy it.'); } } }, 'Copy')));
      form.reset();
      await load();
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(created, errorBox(e, 'Not created'));
    } finally {
      save.disabled = false;
    }
  });
  // The new token is shown outside the form, which is reset after a creation.
  append($app, h('p', { class: 'muted' }, 'Tokens carry a role and, optionally, queue and agent patterns; see docs/security.md.'), form, created, h('h2', null, 'Tokens'), body);
  await load();
}

export async function settingsPage(ctx) {
  append($app, heading('Engine settings'));
  if (!mayRead()) {
    append($app, h('p', { class: 'msg' }, 'The engine settings are readable with a reader or admin token.'));
    return;
  }
  const body = h('div', null, h('p', null, 'Loading…'));
  append($app, h('p', { class: 'muted' }, 'The cluster\u2019s defaults for every queue; a queue\u2019s own overrides win (see its page).'), body);
  const load = async () => {
    let cfg;
    try {
      cfg = await api('GET', '/v1/config', undefined, { signal: ctx.signal });
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(body, errorBox(e, 'Could not read the settings'));
      return;
    }
    const engine = cfg.engine || {};
    const rows = [...QUEUE_FIELDS.filter(([k]) => k in engine), ['strategy', 'Assignment strategy', '']];
    const note = cfg.this_node_file_differs
      ? h('p', { class: 'msg' }, 'This node\u2019s configuration file names other settings; the cluster\u2019s (below) apply.')
      : null;
    if (!isAdmin()) {
      replace(body, note, table([
        { label: 'Setting', cell: ([, label]) => label },
        { label: 'Value', cls: 'num', cell: ([k, , unit]) => `${engine[k]}${unit ? ` ${unit}` : ''}` },
      ], rows, { caption: 'Engine settings' }));
      return;
    }
    const inputs = {};
    const fields = rows.map(([k, label, unit]) => {
      const id = `cfg-${k}`;
      inputs[k] = k === 'strategy'
        ? h('select', { id, name: k }, STRATEGIES.map((st) => h('option', { value: st, selected: engine[k] === st }, st)))
        : h('input', { id, name: k, type: 'number', min: '0', step: '1', inputmode: 'numeric', value: engine[k] ?? '' });
      return h('div', { class: 'field' }, h('label', { for: id }, label, unit ? ` (${unit})` : ''), inputs[k]);
    });
    const result = h('div', { role: 'status', 'aria-live': 'polite' });
    const save = h('button', { type: 'submit', class: 'primary' }, 'Save settings');
    const form = h('form', { class: 'settings', novalidate: true }, h('fieldset', null, h('legend', null, 'Change the cluster\u2019s defaults (audited)'),
      h('div', { class: 'grid' }, fields), h('div', { class: 'actions' }, save)), result);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const changes = {};
      for (const [k, el] of Object.entries(inputs)) {
        const v = el.value.trim();
        if (k === 'strategy') { if (v !== engine[k]) changes[k] = v; continue; }
        if (!/^\d+$/.test(v)) { replace(result, h('p', { class: 'msg error', role: 'alert' }, `${k}: “${v}” is not a whole number`)); el.focus(); return; }
        if (Number(v) !== engine[k]) changes[k] = Number(v);
      }
      if (!Object.keys(changes).length) { replace(result, h('p', { class: 'msg' }, 'Nothing changed.')); return; }
      save.disabled = true;
      try {
        await api('PUT', '/v1/config', changes);
        flash('ok', 'Saved the engine settings: ', Object.entries(changes).map(([k, v]) => `${k}=${v}`).join(', '), '.');
        await load();
      } catch (e) {
        if (e.name === 'AbortError') return;
        replace(result, errorBox(e, 'Not saved'));
        save.disabled = false;
      }
    });
    replace(body, note, form);
  };
  await load();
}
