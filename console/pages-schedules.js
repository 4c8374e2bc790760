// Schedules: every schedule with its next due time, last run and counts; for admins, a form that
// creates or replaces one, and buttons to pause, resume or delete.

import { $app, append, errorBox, flash, formatPeriod, h, num, pagedTable, periodMs, replace, timeEl } from './lib.js';
import { api, isAdmin } from './api.js';
import { heading } from './pages-ops.js';

function when(s) {
  if (s.cron) return h('span', null, h('code', null, s.cron), h('span', { class: 'muted' }, ` ${s.timezone || 'UTC'}`));
  return `every ${formatPeriod(s.every_ms)}`;
}

// What PUT takes, from what GET gave (to pause or resume a schedule as it is).
function definition(s) {
  const out = { task: s.task, missed: s.missed, paused: s.paused };
  for (const k of ['cron', 'timezone', 'every_ms', 'catch_up']) if (s[k] !== null && s[k] !== undefined) out[k] = s[k];
  return out;
}

// The form's fields → the schedule's definition; an error names the field.
function readForm(f) {
  const name = f.name.value.trim();
  if (!name) throw new Error('A schedule needs a name.');
  const spec = f.when.value.trim();
  const body = { task: { queue: f.queue.value.trim() }, missed: f.missed.value, paused: f.paused.checked };
  if (!body.task.queue) throw new Error('A schedule needs a queue for its tasks.');
  if (f.kind.value.trim()) body.task.kind = f.kind.value.trim();
  if (f.mode.value === 'every') {
    const ms = periodMs(spec);
    if (ms === null) throw new Error(`Every: “${spec}” is not a period like 30s, 5m or 1h`);
    body.every_ms = ms;
  } else {
    if (!spec) throw new Error('Cron: enter an expression, such as 0 30 9 * * Mon-Fri.');
    body.cron = spec;
    if (f.timezone.value.trim()) body.timezone = f.timezone.value.trim();
  }
  const payload = f.payload.value.trim();
  if (payload) {
    try {
      body.task.payload = JSON.parse(payload);
    } catch (e) {
      throw new Error(`Payload: not JSON (${e.message})`);
    }
  }
  const prio = f.priority.value.trim();
  if (prio) {
    if (!/^-?\d+$/.test(prio)) throw new Error(`Priority: “${prio}” is not a whole number`);
    body.task.priority = Number(prio);
  }
  if (body.missed === 'catch_up') {
    const n = f.catchUp.value.trim() || '1';
    if (!/^\d+$/.test(n)) throw new Error(`Catch up: “${n}” is not a number of runs`);
    body.catch_up = Number(n);
  }
  return [name, body];
}

export async function schedulesPage(ctx) {
  append($app, heading('Schedules'));
  const body = h('div', null, h('p', null, 'Loading…'));
  const admin = isAdmin();
  const f = {
    name: h('input', { id: 'sched-name', name: 'name', required: true, autocomplete: 'off' }),
    mode: h('select', { id: 'sched-mode', name: 'mode' }, h('option', { value: 'cron' }, 'cron'), h('option', { value: 'every' }, 'every')),
    when: h('input', { id: 'sched-when', name: 'when', autocomplete: 'off', placeholder: '0 30 9 * * Mon-Fri, or 5m' }),
    timezone: h('input', { id: 'sched-timezone', name: 'timezone', autocomplete: 'off', placeholder: 'UTC (e.g. Europe/Berlin)' }),
    queue: h('input', { id: 'sched-queue', name: 'queue', required: true, autocomplete: 'off' }),
    kind: h('input', { id: 'sched-kind', name: 'kind', autocomplete: 'off' }),
    payload: h('textarea', { id: 'sched-payload', name: 'payload', rows: '3', spellcheck: 'false', placeholder: 'null' }),
    priority: h('input', { id: 'sched-priority', name: 'priority', inputmode: 'numeric', placeholder: '0' }),
    missed: h('select', { id: 'sched-missed', name: 'missed' }, h('option', { value: 'skip' }, 'skip'), h('option', { value: 'catch_up' }, 'catch up')),
    catchUp: h('input', { id: 'sched-catch-up', name: 'catch_up', inputmode: 'numeric', placeholder: '1' }),
    paused: h('input', { id: 'sched-paused', name: 'paused', type: 'checkbox' }),
  };
  const edit = (s) => {
    f.name.value = s.name;
    f.mode.value = s.cron ? 'cron' : 'every';
    f.when.value = s.cron || formatPeriod(s.every_ms);
    f.timezone.value = s.timezone || '';
    f.queue.value = s.task.queue;
    f.kind.value = s.task.kind || '';
    f.payload.value = s.task.payload === undefined || s.task.payload === null ? '' : JSON.stringify(s.task.payload);
    f.priority.value = s.task.priority ? String(s.task.priority) : '';
    f.missed.value = s.missed;
    f.catchUp.value = s.catch_up ? String(s.catch_up) : '';
    f.paused.checked = s.paused;
    f.name.focus();
  };

  const load = async () => {
    let list;
    try {
      list = (await api('GET', '/v1/schedules', undefined, { signal: ctx.signal })).schedules || [];
    } catch (e) {
      if (!ctx.alive || e.name === 'AbortError') return;
      replace(body, errorBox(e, 'Could not list the schedules'));
      return;
    }
    replace(body, pagedTable(columns, list, { empty: 'No schedules.', caption: 'Schedules', cls: 'schedules' }));
  };
  const act = async (btn, what, fn) => {
    btn.disabled = true;
    try {
      await fn();
      flash('ok', what, '.');
      await load();
    } catch (e) {
      if (e.name === 'AbortError') return;
      flash('error', `Not done (${what}): ${e}`);
      btn.disabled = false;
    }
  };
  const path = (s) => `/v1/schedules/${encodeURIComponent(s.name)}`;
  const actions = (s) => h('span', { class: 'row-actions' },
    h('button', { type: 'button', class: 'small', 'data-edit': s.name, onclick: () => edit(s) }, 'Edit'),
    h('button', { type: 'button', class: 'small', 'data-pause': s.name, onclick: (ev) => act(ev.currentTarget,
      `${s.paused ? 'Resumed' : 'Paused'} schedule ${s.name}`, () => api('PUT', path(s), { ...definition(s), paused: !s.paused })) }, s.paused ? 'Resume' : 'Pause'),
    h('button', { type: 'button', class: 'small danger', 'data-delete': s.name, onclick: (ev) => {
      if (!window.confirm(`Delete schedule “${s.name}”? The tasks it created stay.`)) return;
      act(ev.currentTarget, `Deleted schedule ${s.name}`, () => api('DELETE', path(s)));
    } }, 'Delete'));
  const columns = [
    { label: 'Name', cell: (s) => h('strong', null, s.name) },
    { label: 'When', cls: 'wrap', cell: when },
    { label: 'Task', cell: (s) => h('span', null, h('a', { href: `#/queues/${encodeURIComponent(s.task.queue)}` }, s.task.queue), s.task.kind ? h('span', { class: 'muted' }, ` ${s.task.kind}`) : null) },
    { label: 'Missed runs', cell: (s) => (s.missed === 'catch_up' ? `catch up ${num(s.catch_up)}` : 'skip') },
    { label: 'Next', cell: (s) => (s.paused ? h('span', { class: 'badge state-delayed' }, 'paused') : timeEl(s.next_ms)) },
    { label: 'Last run', cell: (s) => h('span', null, timeEl(s.last_run_ms), s.last_task_id ? h('a', { href: `#/tasks/${s.last_task_id}` }, ` #${s.last_task_id}`) : null) },
    { label: 'Fired', cls: 'num', cell: (s) => num(s.fired) },
    { label: 'Skipped', cls: 'num', cell: (s) => num(s.skipped) },
    { label: 'Last error', cls: 'wrap', cell: (s) => (s.last_error ? h('span', { class: 'err-text' }, s.last_error) : h('span', { class: 'muted' }, 'none')) },
    ...(admin ? [{ label: 'Actions', cell: actions }] : []),
  ];

  append($app, h('p', { class: 'muted' },
    'Each run submits a task from the template with the idempotency key schedule:{name}:{due time}; runs fire at the engine clock, never early. See docs/coordination.md#schedules.'));
  if (admin) {
    const result = h('div', { role: 'status', 'aria-live': 'polite' });
    const save = h('button', { type: 'submit', class: 'primary' }, 'Save schedule');
    const field = (id, label, el) => h('div', { class: 'field' }, h('label', { for: id }, label), el);
    const form = h('form', { class: 'settings', id: 'schedule-form', novalidate: true }, h('fieldset', null, h('legend', null, 'Create or replace a schedule (audited)'),
      h('div', { class: 'grid' },
        field('sched-name', 'Name', f.name), field('sched-mode', 'Kind of schedule', f.mode), field('sched-when', 'Cron expression or period', f.when),
        field('sched-timezone', 'Time zone (cron)', f.timezone), field('sched-queue', 'Queue', f.queue), field('sched-kind', 'Task kind', f.kind),
        field('sched-priority', 'Priority', f.priority), field('sched-missed', 'Missed runs', f.missed), field('sched-catch-up', 'Catch up at most (runs)', f.catchUp),
        field('sched-payload', 'Payload (JSON)', f.payload),
        h('div', { class: 'field' }, h('label', { for: 'sched-paused' }, f.paused, ' Paused'))),
      h('div', { class: 'actions' }, save)), result);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      let name;
      let def;
      try {
        [name, def] = readForm(f);
      } catch (e) {
        replace(result, h('p', { class: 'msg error', role: 'alert' }, e.message));
        return;
      }
      save.disabled = true;
      try {
        const out = await api('PUT', `/v1/schedules/${encodeURIComponent(name)}`, def);
        replace(result);
        flash('ok', `Saved schedule ${out.name}`, out.next_ms ? `; next run ${new Date(out.next_ms).toISOString()}` : '', '.');
        await load();
      } catch (e) {
        if (e.name === 'AbortError') return;
        replace(result, errorBox(e, 'Not saved'));
      } finally {
        save.disabled = false;
      }
    });
    append($app, form);
  }
  append($app, h('h2', null, 'Schedules'), body);
  await load();
  // Next and last runs move on their own: refresh while the page is open.
  const timer = setInterval(() => { if (ctx.alive) load(); }, 5000);
  ctx.cleanups.push(() => clearInterval(timer));
}
