// The navigation and the operator's pages: overview, queue, agents, cluster, autoscaler,
// adapters, audit.

import { $app, $nav, $who, PAGE_SIZE, QUEUE_FIELDS, STATES, STRATEGIES, absTime, ageEl, append, clear, cursorPager, dur, errorBox, flash, h, json, num, pagedTable, replace, session, table, timeEl, truncate } from './lib.js';
import { api, follow, isAdmin, mayRead, restricted } from './api.js';
import { taskColumns, tasksQuery } from './pages-tasks.js';
import { limitsSection } from './pages-limits.js';
import { signOut } from './app.js';

// ---------------------------------------------------------------- pages

export const NAV = [
  ['#/', 'Overview', /^\/$/],
  // A metrics token reads queue depths and the autoscaler only.
  ['#/tasks', 'Tasks', /^\/tasks/, () => session.me.role !== 'metrics'],
  ['#/dead', 'Dead letters', /^\/dead/, () => session.me.role !== 'metrics'],
  ['#/agents', 'Agents', /^\/agents/, () => mayRead()],
  ['#/cluster', 'Cluster', /^\/cluster/, () => mayRead()],
  ['#/autoscaler', 'Autoscaler', /^\/autoscaler/, () => session.me.role !== 'producer'],
  ['#/adapters', 'Adapters', /^\/adapters/, () => mayRead()],
  // Schedules may name any queue: readers and admins without queue restrictions.
  ['#/schedules', 'Schedules', /^\/schedules/, () => mayRead() && !restricted()],
  ['#/audit', 'Audit', /^\/audit/, () => isAdmin()],
  ['#/tokens', 'Tokens', /^\/tokens/, () => isAdmin()],
  ['#/settings', 'Settings', /^\/settings/, () => mayRead()],
];

export function renderChrome(path) {
  if (!session.me) {
    clear($nav);
    clear($who);
    return;
  }
  replace($nav, h('ul', null, NAV.filter((n) => !n[3] || n[3]()).map(([href, label, re]) =>
    h('li', null, h('a', { href, 'aria-current': re.test(path) ? 'page' : null }, label)))));
  replace($who,
    h('span', { class: 'ident', title: session.me.queues && session.me.queues.length ? `queues: ${session.me.queues.join(', ')}` : null },
      session.me.auth ? `${session.me.name} · ` : 'auth off · ', h('strong', null, session.me.role)),
    session.me.auth ? h('button', { type: 'button', id: 'signout', onclick: signOut }, 'Sign out') : null);
}

export function heading(text, ...extra) {
  document.title = `${text} · Minion`;
  return h('div', { class: 'page-head' }, h('h1', null, text), ...extra);
}

// Overview: queues with counts by state, live.
// Rates and sparklines come from the queue counts this tab has seen (the API keeps no history):
// a sample per refresh, at least every 10 s while the overview is open, for the last 10 minutes.
const HISTORY_MS = 10 * 60 * 1000;
const FINISHED_STATES = ['succeeded', 'dead', 'cancelled', 'rejected'];
const history = new Map(); // queue -> [{ t, created, finished, ready }]

function sample(queues) {
  const t = Date.now();
  for (const q of queues) {
    const created = STATES.reduce((a, st) => a + (q[st] || 0), 0);
    const finished = FINISHED_STATES.reduce((a, st) => a + (q[st] || 0), 0);
    const list = history.get(q.queue) || [];
    list.push({ t, created, finished, ready: q.ready || 0 });
    while (list.length && list[0].t < t - HISTORY_MS) list.shift();
    history.set(q.queue, list);
  }
}

// Per second over the last minute of samples; null before two samples a second apart. Retention
// purges lower the counts, so a negative difference counts as none.
function ratePerSec(queue, key) {
  const list = history.get(queue) || [];
  if (list.length < 2) return null;
  const last = list[list.length - 1];
  const first = list.find((p) => p.t >= last.t - 60000) || list[0];
  const dt = (last.t - first.t) / 1000;
  if (dt < 1) return null;
  return Math.max(0, last[key] - first[key]) / dt;
}

function rateEl(queue, key) {
  const r = ratePerSec(queue, key);
  if (r === null) return h('span', { class: 'muted', title: 'needs two samples a second apart' }, '—');
  return h('span', { title: 'per second over the last minute' }, r >= 10 ? r.toFixed(0) : r.toFixed(1));
}

// The queue's ready count over the samples kept, as an SVG line (built with DOM calls, no markup).
function sparkline(queue) {
  const NS = 'http://www.w3.org/2000/svg';
  const list = (history.get(queue) || []).slice(-120);
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', '0 0 100 20');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const ready = list.map((p) => p.ready);
  const max = Math.max(1, ...ready);
  const minutes = list.length > 1 ? Math.max(1, Math.round((list[list.length - 1].t - list[0].t) / 60000)) : 0;
  svg.setAttribute('aria-label', list.length > 1
    ? `ready tasks over the last ${minutes} min: ${Math.min(...ready)} to ${Math.max(...ready)}`
    : 'ready tasks: one sample so far');
  if (list.length > 1) {
    const t0 = list[0].t;
    const span = Math.max(1, list[list.length - 1].t - t0);
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', list.map((p) => `${((p.t - t0) / span * 100).toFixed(2)},${(19 - (p.ready / max) * 18).toFixed(2)}`).join(' '));
    svg.appendChild(line);
  }
  return svg;
}

export async function overviewPage(ctx) {
  const live = h('span', { class: 'live' });
  const summary = h('div', { class: 'summary' });
  const body = h('div', null, h('p', null, 'Loading…'));
  append($app, heading('Overview', live), summary, h('h2', null, 'Queues'), body);
  if (!mayRead()) {
    replace(body, h('p', { class: 'msg' }, `The ${session.me.role} role may not read queue statistics; see `, h('a', { href: '#/tasks' }, 'Tasks'), '.'));
    clear(live);
    return;
  }
  let busy = false;
  let again = false;
  const load = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const [qs, stats] = await Promise.all([
        api('GET', '/v1/queues', undefined, { signal: ctx.signal }),
        api('GET', '/v1/stats', undefined, { signal: ctx.signal }).catch(() => null),
      ]);
      if (!ctx.alive) return;
      const queues = qs.queues || [];
      sample(queues);
      const totals = Object.fromEntries(STATES.map((s) => [s, queues.reduce((a, q) => a + (q[s] || 0), 0)]));
      replace(summary,
        h('dl', { class: 'cards' },
          card('Queues', num(queues.length)),
          card('Ready', num(totals.ready), '#/tasks?state=ready'),
          card('In flight', num(totals.leased), '#/tasks?state=leased'),
          card('Dead', num(totals.dead), '#/dead'),
          stats ? card('Tasks kept', num(stats.tasks)) : null,
          stats && stats.raft ? card('Leader', `node ${stats.raft.leader ?? '—'}`, '#/cluster') : null,
          stats && stats.raft ? card('Applied index', num(stats.raft.applied_index), '#/cluster') : null));
      const cols = [
        { label: 'Queue', cell: (q) => h('a', { href: `#/queues/${encodeURIComponent(q.queue)}` }, q.queue) },
        ...STATES.map((s) => ({
          label: s, cls: 'num', head: h('span', { class: `head-${s}` }, s),
          cell: (q) => (q[s] ? h('a', { href: s === 'dead' ? `#/dead?queue=${encodeURIComponent(q.queue)}` : `#/tasks?queue=${encodeURIComponent(q.queue)}&state=${s}` }, num(q[s])) : h('span', { class: 'zero' }, '0')),
        })),
        { label: 'Oldest ready', cls: 'num', cell: (q) => (q.ready ? ageEl(q.oldest_ready_age_ms) : h('span', { class: 'muted' }, '—')) },
        { label: 'In /s', cls: 'num', cell: (q) => rateEl(q.queue, 'created') },
        { label: 'Out /s', cls: 'num', cell: (q) => rateEl(q.queue, 'finished') },
        { label: 'Ready, last minutes', cell: (q) => sparkline(q.queue) },
      ];
      replace(body, pagedTable(cols, queues, { empty: 'No queues yet: submit a task to create one.', caption: 'Queues' }));
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(body, errorBox(e, 'Could not load the queues'));
    } finally {
      busy = false;
      if (again && ctx.alive) { again = false; setTimeout(load, 250); }
    }
  };
  await load();
  // A sample at least every 10 s, so that rates fall back to zero and the lines go on when idle.
  const tick = setInterval(() => { if (ctx.alive) load(); }, 10000);
  ctx.cleanups.push(() => clearInterval(tick));
  // Live: every event means some count moved; refresh at most every 500 ms.
  let pending = null;
  ctx.cleanups.push(() => clearTimeout(pending));
  follow(ctx, '/v1/events', {
    indicator: live,
    poll: load,
    pollMs: 5000,
    onEvent: () => {
      if (pending) return;
      pending = setTimeout(() => { pending = null; load(); }, 500);
    },
  });
}

export function card(label, value, href) {
  return h('div', { class: 'card' }, h('dt', null, label), h('dd', null, href ? h('a', { href }, value) : value));
}

// A queue: stats, settings (editable by admins), its tasks.
export async function queuePage(ctx, name) {
  const top = h('div', null, h('p', null, 'Loading…'));
  const tasksBox = h('div');
  append($app, heading(`Queue ${name}`,
    h('a', { class: 'btnlink', href: `#/tasks?queue=${encodeURIComponent(name)}` }, 'Search its tasks'),
    h('a', { class: 'btnlink', href: `#/dead?queue=${encodeURIComponent(name)}` }, 'Its dead letters')), top, tasksBox);
  const load = async () => {
    let q;
    try {
      q = await api('GET', `/v1/queues/${encodeURIComponent(name)}`, undefined, { signal: ctx.signal });
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(top, errorBox(e, 'Could not load the queue'));
      return;
    }
    if (!ctx.alive) return;
    const st = q.stats || {};
    const counts = h('dl', { class: 'cards' }, STATES.map((s) =>
      card(s, st[s] ? num(st[s]) : '0', `#/tasks?queue=${encodeURIComponent(name)}&state=${s}`)),
      card('Oldest ready', st.ready ? dur(st.oldest_ready_age_ms) : '—'));
    const rows = [...QUEUE_FIELDS.map(([k, label, unit]) => ({ k, label, unit })), { k: 'strategy', label: 'Assignment strategy', unit: '' }];
    const settings = table([
      { label: 'Setting', cell: (r) => r.label },
      { label: 'Effective', cls: 'num', cell: (r) => fmtSetting(q.config[r.k], r.unit) },
      { label: 'Override', cls: 'num', cell: (r) => (q.overrides[r.k] === null || q.overrides[r.k] === undefined ? h('span', { class: 'muted' }, 'default') : fmtSetting(q.overrides[r.k], r.unit)) },
    ], rows, { caption: 'Settings' });
    replace(top, h('h2', null, 'Counts'), counts, h('h2', null, 'Settings'), settings, isAdmin() ? settingsForm(ctx, name, q, load) : null, limits);
  };
  const limits = h('div');
  await load();
  limitsSection(ctx, name).then((el) => replace(limits, el));
  // Its tasks, filterable by state.
  const stateSel = h('select', { id: 'qstate' }, h('option', { value: '' }, 'any state'), STATES.map((s) => h('option', { value: s }, s)));
  const pager = cursorPager(ctx, async (after) => {
    const r = await api('GET', tasksQuery({ queue: name, state: stateSel.value }, after), undefined, { signal: ctx.signal });
    return { rows: r.tasks, next: r.next };
  }, (rows) => table(taskColumns(), rows, { empty: 'No tasks match.', caption: 'Tasks' }));
  stateSel.addEventListener('change', () => pager.load());
  append(tasksBox, h('h2', null, 'Tasks'), h('div', { class: 'toolbar' }, h('label', { for: 'qstate' }, 'State '), stateSel), pager.el);
  pager.load();
}

export function fmtSetting(v, unit) {
  if (v === null || v === undefined) return '—';
  if (unit === 'ms') return h('span', { title: `${v} ms` }, dur(v));
  if (unit === 'bytes') return `${num(v)} bytes`;
  return String(v);
}

export function settingsForm(ctx, name, q, reload) {
  const inputs = {};
  const fields = QUEUE_FIELDS.map(([k, label, unit]) => {
    const id = `set-${k}`;
    inputs[k] = h('input', { id, name: k, type: 'number', min: '0', step: '1', inputmode: 'numeric', value: q.overrides[k] ?? '', placeholder: `default ${q.config[k] ?? ''}` });
    return h('div', { class: 'field' }, h('label', { for: id }, label, unit ? ` (${unit})` : ''), inputs[k]);
  });
  inputs.strategy = h('select', { id: 'set-strategy', name: 'strategy' },
    h('option', { value: '' }, `default (${q.config.strategy || 'round_robin'})`),
    STRATEGIES.map((s) => h('option', { value: s, selected: q.overrides.strategy === s }, s)));
  fields.push(h('div', { class: 'field' }, h('label', { for: 'set-strategy' }, 'Assignment strategy'), inputs.strategy));
  const result = h('div', { role: 'status', 'aria-live': 'polite' });
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save overrides');
  const form = h('form', { class: 'settings', novalidate: true }, h('fieldset', null, h('legend', null, 'Change the overrides (empty: the default)'),
    h('div', { class: 'grid' }, fields), h('div', { class: 'actions' }, save)), result);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const [k, el] of Object.entries(inputs)) {
      const v = el.value.trim();
      if (v === '') continue;
      if (k === 'strategy') body[k] = v;
      else if (!/^\d+$/.test(v)) {
        replace(result, h('p', { class: 'msg error', role: 'alert' }, `${k}: “${v}” is not a whole number`));
        el.focus();
        return;
      } else body[k] = Number(v);
    }
    save.disabled = true;
    try {
      const out = await api('PUT', `/v1/queues/${encodeURIComponent(name)}`, body);
      const set = Object.entries(out.overrides || {}).filter(([, v]) => v !== null);
      flash('ok', `Saved the overrides of queue ${name}: `, set.length ? set.map(([k, v]) => `${k}=${v}`).join(', ') : 'none (all defaults)', '.');
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

// Task search: queue, state, kind, agent, created time; cursor paging.

export async function agentsPage(ctx) {
  const mayDrain = !!session.me && (session.me.role === 'admin' || session.me.role === 'worker');
  let pager;
  const drain = async (a, btn) => {
    btn.disabled = true;
    try {
      await api('POST', `/v1/agents/${encodeURIComponent(a.id)}/drain`, {});
      flash('ok', `Agent ${a.id} is draining: it gets no new tasks and keeps its in-flight ones.`);
      await pager.load();
    } catch (e) {
      if (e.name === 'AbortError') return;
      flash('error', `Could not drain agent ${a.id}: ${e}`);
      btn.disabled = false;
    }
  };
  const cols = [
    { label: 'Agent', cell: (a) => h('span', null, h('strong', null, a.id), a.name && a.name !== a.id ? h('span', { class: 'muted' }, ` ${a.name}`) : null) },
    { label: 'Status', cell: (a) => h('span', { class: `badge agent-${String(a.status).replace(/[^a-z_]/g, '')}` }, a.status) },
    { label: 'Capabilities', cls: 'wrap', cell: (a) => ((a.capabilities || []).length ? a.capabilities.map((c) => h('span', { class: 'tag' }, c)) : h('span', { class: 'muted' }, 'none')) },
    { label: 'In flight', cls: 'num', cell: (a) => `${num(a.stats && a.stats.in_flight)} / ${a.max_concurrency ?? '∞'}` },
    { label: 'Completed', cls: 'num', cell: (a) => num(a.stats && a.stats.overall && a.stats.overall.completed) },
    { label: 'Failed', cls: 'num', cell: (a) => num(a.stats && a.stats.overall && a.stats.overall.failed) },
    { label: 'Latency (EWMA)', cls: 'num', cell: (a) => dur(a.stats && a.stats.overall && a.stats.overall.latency_ewma_ms) },
    { label: 'Last seen', cls: 'num', cell: (a) => (a.last_seen_ms_ago === null || a.last_seen_ms_ago === undefined ? '—' : h('span', { title: absTime(Date.now() - a.last_seen_ms_ago) }, `${dur(a.last_seen_ms_ago)} ago`)) },
    { label: 'Registered', cell: (a) => timeEl(a.registered_ms) },
  ];
  if (mayDrain) {
    cols.push({ label: 'Actions', cell: (a) => (a.status === 'active' ? h('button', { type: 'button', class: 'small', 'data-drain': a.id, onclick: (ev) => drain(a, ev.currentTarget) }, 'Drain') : '') });
  }
  pager = cursorPager(ctx, async (after) => {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (after !== null && after !== undefined) q.set('after', after);
    const r = await api('GET', `/v1/agents?${q}`, undefined, { signal: ctx.signal });
    return { rows: r.agents, next: r.next };
  }, (rows) => table(cols, rows, { empty: 'No agents registered.', caption: 'Agents' }));
  append($app, heading('Agents', h('button', { type: 'button', onclick: () => pager.load() }, 'Refresh')), pager.el);
  await pager.load();
}

// Cluster: members, leader, lag, applied index; refreshed every 5 s.
export async function clusterPage(ctx) {
  const body = h('div', null, h('p', null, 'Loading…'));
  const stamp = h('span', { class: 'muted' });
  append($app, heading('Cluster', stamp), body);
  const load = async () => {
    try {
      const c = await api('GET', '/v1/cluster', undefined, { signal: ctx.signal });
      if (!ctx.alive) return;
      stamp.textContent = `refreshed ${new Date().toLocaleTimeString()}, every 5 s`;
      const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
      replace(body,
        h('dl', { class: 'cards' },
          card('Leader', c.leader === null || c.leader === undefined ? 'none' : `node ${c.leader}`),
          card('Term', num(c.term)),
          card('Committed index', num(c.committed_index)),
          card('Applied index', num(c.applied_index)),
          card('Last log index', num(c.last_log_index)),
          card('Members', num((c.members || []).length))),
        h('dl', { class: 'facts' },
          row('Cluster id', h('code', null, c.cluster_id || '—')),
          row('Answered by', `node ${c.answered_by ?? '—'}`),
          row('Joint consensus', c.joint_consensus ? 'yes (membership change in progress)' : 'no')),
        h('h2', null, 'Members'),
        table([
          { label: 'Node', cls: 'num', cell: (m) => String(m.node_id) },
          { label: 'Role', cell: (m) => [m.role, m.leader ? h('span', { class: 'badge state-succeeded' }, 'leader') : null] },
          { label: 'API', cell: (m) => m.api_addr || '—' },
          { label: 'Raft', cell: (m) => m.raft_addr || '—' },
          { label: 'Matched index', cls: 'num', cell: (m) => num(m.matched_index) },
          { label: 'Lag', cls: 'num', cell: (m) => h('span', { class: m.lag > 0 ? 'warn-text' : null }, num(m.lag)) },
        ], c.members || [], { caption: 'Members' }));
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(body, errorBox(e, 'Could not load the cluster'));
    }
  };
  await load();
  const t = setInterval(load, 5000);
  ctx.cleanups.push(() => clearInterval(t));
}

// Autoscaler: pools, and the chosen pool's recent decisions.
export async function autoscalerPage(ctx, params) {
  const chosen = params.get('pool') || '';
  const body = h('div', null, h('p', null, 'Loading…'));
  const dec = h('div');
  append($app, heading('Autoscaler'), body, dec);
  let pools;
  try {
    pools = (await api('GET', '/v1/autoscaler', undefined, { signal: ctx.signal })).pools || {};
  } catch (e) {
    if (!ctx.alive || e.name === 'AbortError') return;
    replace(body, errorBox(e, 'Could not load the pools'));
    return;
  }
  const list = Object.entries(pools).map(([name, p]) => Object.assign({ name }, p));
  replace(body, h('h2', null, 'Pools'), table([
    { label: 'Pool', cell: (p) => h('a', { href: `#/autoscaler?pool=${encodeURIComponent(p.name)}`, 'aria-current': p.name === chosen ? 'true' : null }, p.name) },
    { label: 'Queues', cls: 'wrap', cell: (p) => (p.queues || []).join(', ') },
    { label: 'Capabilities', cls: 'wrap', cell: (p) => (p.capabilities || []).join(', ') || '—' },
    { label: 'Workers (min–max)', cls: 'num', cell: (p) => (p.policy ? `${num(p.policy.min_workers)}–${num(p.policy.max_workers)}` : '—') },
    { label: 'Desired', cls: 'num', cell: (p) => num(p.desired) },
    { label: 'Current', cls: 'num', cell: (p) => num(p.current) },
    { label: 'Last rule', cell: (p) => (p.last_decision ? String(p.last_decision.rule) : '—') },
    { label: 'Last decided', cell: (p) => (p.last_decision ? timeEl(p.last_decision.at_ms) : '—') },
  ], list, { empty: 'No autoscaler pools are configured on this node (see the [[pools]] section of the config).', caption: 'Pools' }));
  if (!chosen) {
    if (list.length) append(dec, h('p', { class: 'muted' }, 'Choose a pool to see its recent decisions.'));
    return;
  }
  try {
    const r = await api('GET', `/v1/autoscaler/decisions?pool=${encodeURIComponent(chosen)}&limit=200`, undefined, { signal: ctx.signal });
    replace(dec, h('h2', null, `Decisions of ${chosen}, newest first`), pagedTable([
      { label: 'At', cell: (d) => timeEl(d.at_ms) },
      { label: 'Previous', cls: 'num', cell: (d) => num(d.previous) },
      { label: 'Desired', cls: 'num', cell: (d) => num(d.desired) },
      { label: 'Rule', cell: (d) => String(d.rule) },
      { label: 'Signals', cls: 'wrap', cell: (d) => Object.entries(d.signals || {}).map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : v}`).join(' ') },
    ], r.decisions || [], { empty: 'No decisions yet.', caption: 'Decisions' }));
  } catch (e) {
    if (!ctx.alive || e.name === 'AbortError') return;
    replace(dec, errorBox(e, `Could not load the decisions of ${chosen}`));
  }
}

// Ingest and export adapters: their last reports.
export async function adaptersPage(ctx) {
  const body = h('div', null, h('p', null, 'Loading…'));
  append($app, heading('Adapters', h('button', { type: 'button', onclick: () => load() }, 'Refresh')), body);
  const load = async () => {
    try {
      const r = await api('GET', '/v1/adapters', undefined, { signal: ctx.signal });
      if (!ctx.alive) return;
      const known = new Set(['name', 'kind', 'running', 'ingested', 'rejected', 'lag', 'last_error', 'reported_ms_ago']);
      replace(body, pagedTable([
        { label: 'Adapter', cell: (a) => h('strong', null, a.name) },
        { label: 'Kind', cell: (a) => a.kind ?? '—' },
        { label: 'Running', cell: (a) => h('span', { class: `badge ${a.running ? 'state-succeeded' : 'state-dead'}` }, a.running ? 'running' : 'stopped') },
        { label: 'Ingested', cls: 'num', cell: (a) => num(a.ingested) },
        { label: 'Rejected', cls: 'num', cell: (a) => num(a.rejected) },
        { label: 'Lag', cls: 'num', cell: (a) => num(a.lag) },
        { label: 'Reported', cell: (a) => (a.reported_ms_ago === undefined ? '—' : h('span', { title: absTime(Date.now() - a.reported_ms_ago) }, `${dur(a.reported_ms_ago)} ago`)) },
        { label: 'Last error', cls: 'wrap', cell: (a) => (a.last_error ? h('span', { class: 'err-text' }, String(a.last_error)) : '') },
        { label: 'Details', cls: 'wrap', cell: (a) => {
          const rest = Object.fromEntries(Object.entries(a).filter(([k]) => !known.has(k)));
          return Object.keys(rest).length ? h('details', null, h('summary', null, 'more'), h('pre', { class: 'json' }, json(rest))) : '';
        } },
      ], r.adapters || [], { empty: 'No adapter has reported to this node in the last hour.', caption: 'Adapters' }));
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(body, errorBox(e, 'Could not load the adapters'));
    }
  };
  await load();
}

// The audit trail (admin only), oldest first, paged.
export async function auditPage(ctx) {
  append($app, heading('Audit trail'));
  if (!isAdmin()) {
    append($app, h('p', { class: 'msg' }, 'The audit trail needs an admin token.'));
    return;
  }
  const pager = cursorPager(ctx, async (after) => {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (after !== null && after !== undefined) q.set('after', after);
    const r = await api('GET', `/v1/audit?${q}`, undefined, { signal: ctx.signal });
    return { rows: r.entries, next: r.next };
  }, (rows) => table([
    { label: 'Seq', cls: 'num', cell: (e) => String(e.seq) },
    { label: 'At', cell: (e) => timeEl(e.at_ms) },
    { label: 'Actor', cell: (e) => e.actor },
    { label: 'Action', cell: (e) => h('code', null, e.action) },
    { label: 'Target', cell: (e) => e.target || '—' },
    { label: 'Detail', cls: 'wrap detail', cell: (e) => h('span', { title: e.detail || '' }, truncate(e.detail, 160)) },
  ], rows, { empty: 'No administrative actions recorded yet.', caption: 'Audit trail' }));
  append($app, h('p', { class: 'muted' }, 'Successful administrative actions, oldest first.'), pager.el);
  await pager.load();
}

export function notFound(ctx, path) {
  append($app, heading('Not found'), h('p', null, 'No page at ', h('code', null, path), '. ', h('a', { href: '#/' }, 'Go to the overview'), '.'));
}
