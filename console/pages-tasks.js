// The pages about tasks: search, one task (live while it runs) and the dead letters.

import { $app, FINAL, PAGE_SIZE, RETRYABLE, STATES, append, clear, cursorPager, dur, errorBox, flash, h, json, num, replace, stateBadge, table, timeEl, traceId, truncate } from './lib.js';
import { api, follow, isAdmin, mayRead } from './api.js';
import { heading } from './pages-ops.js';
import { route } from './app.js';

// ---------------------------------------------------------------- tasks list (shared)

export function taskColumns(opts = {}) {
  const cols = [];
  if (opts.select) cols.push(opts.select);
  cols.push(
    { label: 'Id', cell: (t) => h('a', { href: `#/tasks/${t.id}` }, `#${t.id}`) },
    { label: 'Queue', cell: (t) => h('a', { href: `#/queues/${encodeURIComponent(t.queue)}` }, t.queue) },
    { label: 'Kind', cell: (t) => t.kind },
    { label: 'State', cell: (t) => stateBadge(t.state) },
    { label: 'Attempts', cls: 'num', cell: (t) => `${(t.attempts || []).length} / ${t.attempt_limit ?? t.max_attempts}` },
    { label: 'Agent', cell: (t) => (t.lease ? t.lease.agent_id : ((t.attempts || []).slice(-1)[0] || {}).agent_id) || '—' },
    { label: 'Created', cell: (t) => timeEl(t.created_ms) },
    { label: 'Updated', cell: (t) => timeEl(t.updated_ms) },
    { label: 'Last error', cls: 'wrap', cell: (t) => (t.last_error ? h('span', { title: t.last_error }, truncate(t.last_error, 80)) : '') },
  );
  if (opts.actions) cols.push(opts.actions);
  return cols;
}

export function tasksQuery(filters, after, limit) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  if (after !== null && after !== undefined) q.set('after', after);
  q.set('limit', limit || PAGE_SIZE);
  return `/v1/tasks?${q}`;
}


export async function tasksPage(ctx, params) {
  const f = {
    queue: params.get('queue') || '',
    state: params.get('state') || '',
    kind: params.get('kind') || '',
    agent: params.get('agent') || '',
    created_from_ms: params.get('created_from_ms') || '',
    created_before_ms: params.get('created_before_ms') || '',
  };
  const input = (id, label, value, extra = {}) => h('div', { class: 'field' }, h('label', { for: id }, label), h('input', Object.assign({ id, name: id, value }, extra)));
  const queues = h('datalist', { id: 'queue-names' });
  const form = h('form', { class: 'search', role: 'search' },
    h('div', { class: 'grid' },
      input('f-queue', 'Queue', f.queue, { list: 'queue-names', autocomplete: 'off' }),
      h('div', { class: 'field' }, h('label', { for: 'f-state' }, 'State'),
        h('select', { id: 'f-state' }, h('option', { value: '' }, 'any'), STATES.map((s) => h('option', { value: s, selected: f.state === s }, s)))),
      input('f-kind', 'Kind', f.kind),
      input('f-agent', 'Agent', f.agent),
      input('f-from', 'Created from', toLocalInput(f.created_from_ms), { type: 'datetime-local', step: '1' }),
      input('f-before', 'Created before', toLocalInput(f.created_before_ms), { type: 'datetime-local', step: '1' })),
    queues,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search'),
      h('a', { class: 'btnlink', href: '#/tasks' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    const val = (id) => form.querySelector(`#${id}`).value.trim();
    const put = (k, v) => { if (v) q.set(k, v); };
    put('queue', val('f-queue'));
    put('state', val('f-state'));
    put('kind', val('f-kind'));
    put('agent', val('f-agent'));
    put('created_from_ms', fromLocalInput(val('f-from')));
    put('created_before_ms', fromLocalInput(val('f-before')));
    const hash = `#/tasks${q.toString() ? `?${q}` : ''}`;
    if (location.hash === hash) route(); else location.hash = hash;
  });
  const pager = cursorPager(ctx, async (after) => {
    const r = await api('GET', tasksQuery(f, after), undefined, { signal: ctx.signal });
    return { rows: r.tasks, next: r.next };
  }, (rows) => table(taskColumns(), rows, { empty: 'No tasks match.', caption: 'Tasks found' }));
  append($app, heading('Tasks'), form, h('h2', null, 'Results'), pager.el);
  if (mayRead()) {
    api('GET', '/v1/queues', undefined, { signal: ctx.signal })
      .then((r) => append(queues, (r.queues || []).slice(0, 500).map((q) => h('option', { value: q.queue }))))
      .catch(() => {});
  }
  await pager.load();
}

export function toLocalInput(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fromLocalInput(v) {
  if (!v) return '';
  const t = new Date(v).getTime();
  return Number.isNaN(t) ? '' : String(t);
}

// One task: everything about it, live while it runs.
export async function taskPage(ctx, id) {
  const live = h('span', { class: 'live' });
  const actions = h('div', { class: 'task-actions' });
  const body = h('div', null, h('p', null, 'Loading…'));
  append($app, heading(`Task #${id}`, live), actions, body);
  let task = null;
  const load = async () => {
    try {
      task = await api('GET', `/v1/tasks/${id}`, undefined, { signal: ctx.signal });
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(body, errorBox(e, 'Could not load the task'));
      return;
    }
    if (!ctx.alive) return;
    renderTask(body, task);
    renderTaskActions(actions, task, load);
  };
  await load();
  if (!task) { clear(live); return; }
  if (FINAL.has(task.state)) {
    live.className = 'live done';
    live.textContent = `Finished (${task.state})`;
    return;
  }
  let pending = null;
  ctx.cleanups.push(() => clearTimeout(pending));
  follow(ctx, `/v1/tasks/${id}/events`, {
    indicator: live,
    poll: load,
    pollMs: 3000,
    finished: () => task && FINAL.has(task.state),
    onEvent: (ev) => {
      if (ev.data && typeof ev.data === 'object' && ev.data.state && task) task.state = ev.data.state;
      if (pending) return;
      pending = setTimeout(() => { pending = null; load(); }, 150);
    },
  });
}

export function renderTask(body, t) {
  const last = (t.progress || []).slice(-1)[0];
  const tid = traceId(t.trace_parent);
  const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
  const facts = h('dl', { class: 'facts' },
    row('State', stateBadge(t.state)),
    row('Queue', h('a', { href: `#/queues/${encodeURIComponent(t.queue)}` }, t.queue)),
    row('Kind', t.kind),
    row('Priority', String(t.priority ?? 0)),
    row('Attempts', `${(t.attempts || []).length} of ${t.attempt_limit ?? t.max_attempts}`),
    row('Created', timeEl(t.created_ms)),
    row('Updated', timeEl(t.updated_ms)),
    row('Runs at', timeEl(t.run_at_ms)),
    row('Finished', timeEl(t.finished_ms)),
    t.lease ? row('Lease', [`held by ${t.lease.agent_id}, expires `, timeEl(t.lease.expires_ms)]) : null,
    row('Lease length', dur(t.lease_ms)),
    t.capabilities && t.capabilities.length ? row('Needs', t.capabilities.join(', ')) : null,
    t.idempotency_key ? row('Idempotency key', h('code', null, t.idempotency_key)) : null,
    row('Trace id', tid ? h('code', { title: `traceparent ${t.trace_parent}`, id: 'trace-id' }, tid) : h('span', { class: 'muted' }, 'none')),
    (t.depends_on || []).length ? row('Depends on', h('span', { id: 'depends-on' }, t.depends_on.map((d, i) => [
      i ? ', ' : '', h('a', { href: `#/tasks/${d.id}` }, `#${d.id}`), ' ', d.state ? stateBadge(d.state) : h('span', { class: 'muted' }, 'removed')]),
    ` (on failure: ${t.on_dependency_failure})`)) : null,
    t.parent_id ? row('Parent', h('a', { id: 'parent', href: `#/tasks/${t.parent_id}` }, `#${t.parent_id}`)) : null,
    (t.children || []).length ? row(`Children (${t.children.length})`, h('span', { id: 'children' }, t.children.map((d, i) => [
      i ? ', ' : '', h('a', { href: `#/tasks/${d.id}` }, `#${d.id}`), ' ', d.state ? stateBadge(d.state) : h('span', { class: 'muted' }, 'removed')]))) : null,
    t.deadline_ms ? row('Deadline', timeEl(t.deadline_ms)) : null,
    t.concurrency_key ? row('Concurrency key', h('code', { id: 'concurrency-key' }, t.concurrency_key)) : null,
    t.last_error ? row('Last error', h('span', { class: 'err-text' }, t.last_error)) : null,
    t.cancel_reason ? row('Cancel reason', t.cancel_reason) : null);
  const progressList = (t.progress || []).length
    ? h('ol', { class: 'progress-list', id: 'progress' }, t.progress.map((p) => h('li', null,
      timeEl(p.at_ms), ' ', h('span', { class: 'muted' }, `attempt ${p.attempt}`), ' ',
      p.percent !== null && p.percent !== undefined ? h('strong', null, `${p.percent}%`) : null, ' ',
      p.message ? h('span', { class: 'pmsg' }, p.message) : null)))
    : h('p', { class: 'empty', id: 'progress' }, 'No progress reported.');
  const bar = last && last.percent !== null && last.percent !== undefined
    ? h('div', { class: 'bar' }, h('progress', { max: '100', value: String(last.percent), 'aria-label': 'Latest progress' }), ` ${last.percent}%`)
    : null;
  replace(body,
    h('div', { class: 'two-col' },
      h('section', null, h('h2', null, 'Summary'), facts),
      h('section', null, h('h2', null, 'Payload'), h('pre', { class: 'json', tabindex: '0' }, json(t.payload)),
        h('h2', null, 'Result'), t.result === null || t.result === undefined ? h('p', { class: 'empty' }, 'No result.') : h('pre', { class: 'json', tabindex: '0', id: 'result' }, json(t.result)))),
    h('h2', null, 'Attempts'),
    table([
      { label: '#', cls: 'num', cell: (a) => String(a.number) },
      { label: 'Agent', cell: (a) => a.agent_id },
      { label: 'Started', cell: (a) => timeEl(a.started_ms) },
      { label: 'Ended', cell: (a) => timeEl(a.ended_ms) },
      { label: 'Took', cls: 'num', cell: (a) => (a.ended_ms ? dur(a.ended_ms - a.started_ms) : 'running') },
      { label: 'Outcome', cls: 'wrap', cell: (a) => outcomeText(a.outcome) },
    ], t.attempts || [], { empty: 'Not attempted yet.', caption: 'Attempts' }),
    h('h2', null, 'Progress'), bar,
    t.progress_dropped ? h('p', { class: 'muted' }, `${t.progress_dropped} earlier report(s) no longer kept.`) : null,
    progressList);
}

export function outcomeText(o) {
  if (!o) return h('span', { class: 'muted' }, 'in progress');
  const kind = o.outcome || 'ended';
  const extra = o.error || o.reason || '';
  return [stateBadge(kind), extra ? ` ${extra}` : ''];
}

export function renderTaskActions(box, t, reload) {
  if (!isAdmin()) { clear(box); return; }
  const reason = h('input', { id: 'cancel-reason', type: 'text', placeholder: 'reason (optional)', maxlength: '1000', autocomplete: 'off' });
  const old = box.querySelector('#cancel-reason');
  if (old) reason.value = old.value;
  const retry = h('button', { type: 'button', class: 'primary', id: 'task-retry', onclick: () => act('retry') }, 'Retry now');
  const cancel = h('button', { type: 'button', class: 'danger', id: 'task-cancel', onclick: () => act('cancel') }, 'Cancel task');
  const act = async (what) => {
    retry.disabled = cancel.disabled = true;
    try {
      await api('POST', `/v1/tasks/${t.id}/${what}`, what === 'cancel' ? { reason: reason.value.trim() || null } : undefined);
      flash('ok', what === 'retry' ? `Task #${t.id} is ready again.` : `Task #${t.id} was cancelled.`);
      await reload();
    } catch (e) {
      if (e.name === 'AbortError') return;
      flash('error', `Could not ${what} task #${t.id}: ${e}`);
      retry.disabled = cancel.disabled = false;
    }
  };
  replace(box,
    RETRYABLE.has(t.state) ? retry : null,
    !FINAL.has(t.state) ? h('span', { class: 'inline' }, h('label', { for: 'cancel-reason', class: 'sr-only' }, 'Cancel reason'), reason, cancel) : null);
}

// Dead letters: retry or cancel, one or many.
// Dead tasks can only be retried (the API refuses to cancel a finished task); failed tasks
// waiting for their next attempt can be retried now or cancelled.
export async function deadPage(ctx, params) {
  const queue = params.get('queue') || '';
  const state = params.get('state') === 'failed' ? 'failed' : 'dead';
  const viewHref = (st) => {
    const q = new URLSearchParams();
    if (queue) q.set('queue', queue);
    if (st !== 'dead') q.set('state', st);
    return `#/dead${q.toString() ? `?${q}` : ''}`;
  };
  const views = h('nav', { class: 'tabs', 'aria-label': 'Which tasks' },
    h('a', { href: viewHref('dead'), 'aria-current': state === 'dead' ? 'page' : null }, 'Dead'),
    h('a', { href: viewHref('failed'), 'aria-current': state === 'failed' ? 'page' : null }, 'Failed, awaiting retry'));
  const selected = new Set();
  const count = h('span', { class: 'muted', id: 'selected-count' }, 'none selected');
  const reason = h('input', { id: 'bulk-reason', type: 'text', placeholder: 'cancel reason (optional)', autocomplete: 'off' });
  const retryBtn = h('button', { type: 'button', class: 'primary', id: 'retry-selected', disabled: true, onclick: () => bulk('retry', [...selected]) }, 'Retry selected');
  const cancelBtn = h('button', { type: 'button', class: 'danger', id: 'cancel-selected', disabled: true, onclick: () => bulk('cancel', [...selected]) }, 'Cancel selected');
  const sync = () => {
    count.textContent = selected.size ? `${selected.size} selected` : 'none selected';
    retryBtn.disabled = cancelBtn.disabled = selected.size === 0;
  };
  if (state === 'dead') cancelBtn.hidden = reason.hidden = true;
  const filter = h('form', { class: 'toolbar', role: 'search' },
    h('label', { for: 'd-queue' }, 'Queue '), h('input', { id: 'd-queue', value: queue, placeholder: 'all queues' }),
    h('button', { type: 'submit' }, 'Filter'));
  filter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = filter.querySelector('#d-queue').value.trim();
    const q = new URLSearchParams();
    if (v) q.set('queue', v);
    if (state !== 'dead') q.set('state', state);
    const hash = `#/dead${q.toString() ? `?${q}` : ''}`;
    if (location.hash === hash) route(); else location.hash = hash;
  });
  const admin = isAdmin();
  let rows = [];
  const selectCol = {
    label: 'Select',
    head: h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'Select all on this page', onchange: (ev) => {
      for (const t of rows) { if (ev.target.checked) selected.add(t.id); else selected.delete(t.id); }
      for (const cb of $app.querySelectorAll('input.pick')) cb.checked = ev.target.checked;
      sync();
    } }),
    cell: (t) => h('input', { type: 'checkbox', class: 'pick', 'aria-label': `Select task ${t.id}`, checked: selected.has(t.id), onchange: (ev) => {
      if (ev.target.checked) selected.add(t.id); else selected.delete(t.id);
      sync();
    } }),
  };
  const actionCol = {
    label: 'Actions',
    cell: (t) => h('span', { class: 'row-actions' },
      h('button', { type: 'button', class: 'small', 'data-retry': t.id, onclick: () => bulk('retry', [t.id]) }, 'Retry'),
      FINAL.has(t.state) ? null : h('button', { type: 'button', class: 'small danger', 'data-cancel': t.id, onclick: () => bulk('cancel', [t.id]) }, 'Cancel')),
  };
  const pager = cursorPager(ctx, async (after) => {
    const r = await api('GET', tasksQuery({ queue, state }, after), undefined, { signal: ctx.signal });
    rows = r.tasks;
    return { rows: r.tasks, next: r.next };
  }, (rs) => table(taskColumns(admin ? { select: selectCol, actions: actionCol } : {}), rs, { empty: state === 'dead' ? 'No dead tasks.' : 'No failed tasks awaiting a retry.', caption: state === 'dead' ? 'Dead tasks' : 'Failed tasks' }));
  const bulk = async (what, ids) => {
    if (!ids.length) return;
    retryBtn.disabled = cancelBtn.disabled = true;
    const ok = [];
    const bad = [];
    const body = what === 'cancel' ? { reason: reason.value.trim() || null } : undefined;
    let i = 0;
    const worker = async () => {
      while (i < ids.length) {
        const id = ids[i++];
        try {
          await api('POST', `/v1/tasks/${id}/${what}`, body);
          ok.push(id);
        } catch (e) {
          bad.push([id, e]);
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    ok.sort((a, b) => a - b);
    const verb = what === 'retry' ? 'Retried' : 'Cancelled';
    const parts = [];
    if (ok.length) parts.push(`${verb} ${ok.length} task${ok.length === 1 ? '' : 's'}: ${ok.map((x) => `#${x}`).join(', ')}.`);
    for (const [id, e] of bad) parts.push(` Could not ${what} #${id}: ${e}.`);
    for (const id of ok) selected.delete(id);
    await pager.load();
    sync();
    flash(bad.length ? 'error' : 'ok', parts.join(''));
  };
  append($app, heading('Dead letters'), views, filter,
    state === 'dead' ? h('p', { class: 'muted' }, 'Tasks that used all their attempts. Retrying makes one ready now; a dead task cannot be cancelled.') : h('p', { class: 'muted' }, 'Tasks whose last attempt failed and that will be retried after their backoff: retry now, or cancel.'),
    admin ? h('div', { class: 'toolbar bulk' }, retryBtn, h('label', { for: 'bulk-reason', class: 'sr-only' }, 'Cancel reason'), reason, cancelBtn, count)
      : h('p', { class: 'muted' }, 'Retrying and cancelling need an admin token.'),
    pager.el);
  await pager.load();
}

// Agents: status, capabilities, in flight, drain.
