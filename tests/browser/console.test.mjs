// Browser tests of the web console: real `minion serve` nodes, Debian's chromium via playwright-core.
//
//   MINION_BIN            the server binary (default /work/main/target/debug/minion)
//   MINION_CONSOLE_DIR    passed to the servers only when set (development: read console/ from disk)
//   CHROMIUM              the browser (default /usr/bin/chromium)
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const BIN = process.env.MINION_BIN || '/work/main/target/debug/minion';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ADMIN = 'console-test-admin-token-0123456789';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer({ auth, config }) {
  const dir = mkdtempSync(join(tmpdir(), 'minion-console-'));
  const port = await freePort();
  const raft = await freePort();
  const args = ['serve', '--data-dir', join(dir, 'data'), '--listen', `127.0.0.1:${port}`, '--raft-listen', `127.0.0.1:${raft}`];
  if (auth) args.push('--auth', 'on');
  if (config) {
    writeFileSync(join(dir, 'minion.toml'), config);
    args.push('--config', join(dir, 'minion.toml'));
  }
  const env = { ...process.env, MINION_LOG_LEVEL: 'warn' };
  delete env.MINION_CONSOLE_DIR;
  delete env.MINION_ADMIN_TOKEN;
  if (process.env.MINION_CONSOLE_DIR) env.MINION_CONSOLE_DIR = process.env.MINION_CONSOLE_DIR;
  if (auth) env.MINION_ADMIN_TOKEN = ADMIN; // the environment keeps it out of `ps`
  const child = spawn(BIN, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`minion exited (${child.exitCode}): ${stderr}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`minion not ready in 30 s: ${stderr}`);
    await sleep(100);
  }
  const server = {
    base,
    token: auth ? ADMIN : null,
    async call(method, path, body, tok = server.token) {
      const headers = {};
      if (tok) headers.Authorization = `Bearer ${tok}`;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      const data = text ? JSON.parse(text) : null;
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
      return data;
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

// A dead task in `queue`: the queue allows one attempt; claimed and failed.
async function makeDead(s, queue, agent = 'a1') {
  await s.call('PUT', `/v1/queues/${queue}`, { max_attempts: 1 });
  const { id } = await s.call('POST', '/v1/tasks', { queue, kind: 'dead-kind', payload: { n: 1 } });
  const claim = await s.call('POST', '/v1/claims', { agent_id: agent, queues: [queue], max: 1 });
  const t = claim.tasks.find((x) => x.id === id);
  assert.ok(t, 'claimed the task');
  await s.call('POST', `/v1/tasks/${id}/fail`, { lease_token: t.lease.token, error: 'boom <b>not html</b>' });
  const got = await s.call('GET', `/v1/tasks/${id}`);
  assert.equal(got.state, 'dead');
  return id;
}

let browser;

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await browser.close();
});

// A page that records console errors and uncaught exceptions.
async function openPage(opts = {}) {
  const context = await browser.newContext({ viewport: opts.viewport || { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return { context, page, errors };
}

describe('console without auth', () => {
  let s;
  let deadId;
  let runningId;

  before(async () => {
    s = await startServer({ auth: false, config: '[[pools]]\nname = "render"\nqueues = ["video"]\npreset = "aggressive"\n' });
    // Some history: tasks in several states, an agent, an adapter report, an audit entry.
    await s.call('POST', '/v1/agents', { id: 'worker-1', name: 'Worker <one>', capabilities: ['gpu', 'ffmpeg'], max_concurrency: 4 });
    for (let i = 0; i < 3; i++) await s.call('POST', '/v1/tasks', { queue: 'emails', kind: 'send', payload: { to: `u${i}@example.com` } });
    deadId = await makeDead(s, 'billing');
    await s.call('PUT', '/v1/queues/video', { max_attempts: 3 });
    const sub = await s.call('POST', '/v1/tasks', { queue: 'video', kind: 'encode', payload: { file: 'a.mp4' } });
    runningId = sub.id;
    await s.call('PUT', '/v1/adapters/kafka-orders', { kind: 'kafka', running: true, ingested: 10, rejected: 1, lag: 3, last_error: null });
    await s.call('PUT', '/v1/schedules/nightly-digest', { cron: '0 0 2 * * *', timezone: 'Europe/Berlin', task: { queue: 'emails', kind: 'digest' } });
  });

  after(async () => {
    if (s) await s.stop();
  });

  test('every page renders without console errors', async () => {
    const { context, page, errors } = await openPage();
    const pages = [
      ['#/', 'Overview', 'emails'],
      ['#/queues/billing', 'Queue billing', 'Max attempts'],
      ['#/tasks', 'Tasks', `#${deadId}`],
      ['#/tasks?queue=emails&state=ready', 'Tasks', 'send'],
      [`#/tasks/${deadId}`, `Task #${deadId}`, 'boom <b>not html</b>'],
      ['#/dead', 'Dead letters', `#${deadId}`],
      ['#/agents', 'Agents', 'Worker <one>'],
      ['#/cluster', 'Cluster', 'Members'],
      ['#/autoscaler', 'Autoscaler', 'render'],
      ['#/autoscaler?pool=render', 'Autoscaler', 'Decisions of render'],
      ['#/adapters', 'Adapters', 'kafka-orders'],
      ['#/schedules', 'Schedules', 'nightly-digest'],
      ['#/audit', 'Audit trail', 'queue.set'],
      ['#/nowhere', 'Not found', 'No page at'],
    ];
    for (const [hash, h1, text] of pages) {
      await page.goto(`${s.base}/${hash}`);
      await page.locator('h1', { hasText: h1 }).first().waitFor();
      await page.getByText(text, { exact: false }).first().waitFor();
    }
    // the /ui/ paths serve the same console
    await page.goto(`${s.base}/ui/index.html#/cluster`);
    await page.locator('h1', { hasText: 'Cluster' }).waitFor();
    // server text is escaped, never interpreted
    assert.equal(await page.locator('b', { hasText: 'not html' }).count(), 0);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('overview updates live from the event stream', async () => {
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/`);
    await page.locator('.live.on').waitFor();
    await s.call('POST', '/v1/tasks', { queue: 'fresh-queue', kind: 'k', payload: {} });
    await page.getByRole('link', { name: 'fresh-queue' }).waitFor({ timeout: 5000 });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('the overview shows rates in and out and a sparkline per queue from what it has seen', async () => {
    const { context, page, errors } = await openPage();
    await s.call('POST', '/v1/tasks', { queue: 'rated', payload: 0 });
    await page.goto(`${s.base}/#/`);
    await page.locator('.live.on').waitFor();
    const row = page.locator('tr', { has: page.getByRole('link', { name: 'rated', exact: true }) });
    await row.waitFor();
    // One sample so far: no rate yet, and a sparkline that says so.
    assert.equal(await row.locator('svg.spark').count(), 1);
    // Ten more tasks over ~2 s, then one finished: both rates become positive numbers.
    for (let i = 0; i < 10; i++) {
      await s.call('POST', '/v1/tasks', { queue: 'rated', payload: i });
      await new Promise((r) => setTimeout(r, 200));
    }
    const claimed = await s.call('POST', '/v1/claims', { agent_id: 'rater', queues: ['rated'], max: 1 });
    const t = claimed.tasks[0];
    await s.call('POST', `/v1/tasks/${t.id}/complete`, { lease_token: t.lease.token });
    const cells = row.locator('td');
    const headers = await page.locator('table thead th').allTextContents();
    const inAt = headers.findIndex((x) => x.trim() === 'In /s');
    const outAt = headers.findIndex((x) => x.trim() === 'Out /s');
    assert.ok(inAt > 0 && outAt > 0, `rate columns in ${headers}`);
    await page.waitForFunction(([sel, i, o]) => {
      const tr = [...document.querySelectorAll('tr')].find((r) => r.querySelector('a') && r.querySelector('a').textContent === sel);
      if (!tr) return false;
      const td = tr.querySelectorAll('td');
      return Number(td[i].textContent) > 0 && Number(td[o].textContent) > 0;
    }, ['rated', inAt, outAt], { timeout: 10000 });
    const rateIn = Number(await cells.nth(inAt).textContent());
    assert.ok(rateIn > 0 && rateIn < 1000, `in: ${rateIn}`);
    assert.equal(await row.locator('svg.spark polyline').count(), 1, 'a line once there are two samples');
    const label = await row.locator('svg.spark').getAttribute('aria-label');
    assert.match(label, /ready tasks over the last \d+ min: \d+ to \d+/);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('the overview falls back to polling when the event stream fails, and says so', async () => {
    const { context, page, errors } = await openPage();
    await page.route('**/v1/events*', (route) => route.abort());
    await page.goto(`${s.base}/#/`);
    await page.locator('.live.polling', { hasText: 'polling every 5 s' }).waitFor();
    await s.call('POST', '/v1/tasks', { queue: 'polled-queue', kind: 'k', payload: {} });
    await page.getByRole('link', { name: 'polled-queue' }).waitFor({ timeout: 8000 });
    // the aborted stream requests are logged by chromium itself
    assert.deepEqual(errors.filter((e) => !/Failed to load resource: net::ERR_FAILED/.test(e)), []);
    await context.close();
  });

  test('retrying a dead task from the dead letters page makes it ready', async () => {
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/dead`);
    const btn = page.locator(`button[data-retry="${deadId}"]`);
    await btn.click();
    await page.locator('.flash .msg.ok', { hasText: `Retried 1 task: #${deadId}` }).waitFor();
    const t = await s.call('GET', `/v1/tasks/${deadId}`);
    assert.equal(t.state, 'ready');
    assert.equal(await page.locator(`button[data-retry="${deadId}"]`).count(), 0);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('retrying many dead tasks and cancelling many failed ones at once', async () => {
    const a = await makeDead(s, 'bulk');
    const b = await makeDead(s, 'bulk');
    const c = await makeDead(s, 'bulk');
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/dead?queue=bulk`);
    await page.locator(`button[data-retry="${c}"]`).waitFor();
    // a dead task cannot be cancelled: no cancel button for it
    assert.equal(await page.locator(`button[data-cancel="${c}"]`).count(), 0);
    await page.getByLabel(`Select task ${a}`).check();
    await page.getByLabel(`Select task ${b}`).check();
    await page.locator('#retry-selected').click();
    await page.locator('.flash .msg.ok', { hasText: `Retried 2 tasks: #${a}, #${b}` }).waitFor();
    assert.equal((await s.call('GET', `/v1/tasks/${a}`)).state, 'ready');
    assert.equal((await s.call('GET', `/v1/tasks/${b}`)).state, 'ready');
    assert.equal(await page.locator(`button[data-retry="${a}"]`).count(), 0);
    await page.locator(`button[data-retry="${c}"]`).waitFor();

    // failed tasks awaiting their retry: cancel several at once
    await s.call('PUT', '/v1/queues/slow', { max_attempts: 5, retry_base_ms: 3600000, retry_max_ms: 3600000 });
    const failed = [];
    for (let i = 0; i < 3; i++) {
      const { id } = await s.call('POST', '/v1/tasks', { queue: 'slow', kind: 'k', payload: { i } });
      const t = (await s.call('POST', '/v1/claims', { agent_id: 'a2', queues: ['slow'], max: 1 })).tasks[0];
      assert.equal(t.id, id);
      await s.call('POST', `/v1/tasks/${id}/fail`, { lease_token: t.lease.token, error: 'flaky' });
      failed.push(id);
    }
    await page.goto(`${s.base}/#/dead?queue=slow`);
    await page.getByRole('link', { name: 'Failed, awaiting retry' }).click();
    await page.locator(`button[data-cancel="${failed[2]}"]`).waitFor();
    await page.locator('#select-all').check();
    await page.locator('#bulk-reason').fill('not needed');
    await page.locator('#cancel-selected').click();
    await page.locator('.flash .msg.ok', { hasText: `Cancelled 3 tasks: #${failed.join(', #')}` }).waitFor();
    for (const id of failed) {
      const t = await s.call('GET', `/v1/tasks/${id}`);
      assert.equal(t.state, 'cancelled');
      assert.equal(t.cancel_reason, 'not needed');
    }
    await page.getByText('No failed tasks awaiting a retry.').waitFor();

    // a refusal shows the API's message: the task page offers to cancel a ready task, which
    // someone else cancels in the meantime
    await page.goto(`${s.base}/#/tasks/${a}`);
    await page.locator('#task-cancel').waitFor();
    await s.call('POST', `/v1/tasks/${a}/cancel`, { reason: 'elsewhere' });
    await page.locator('#task-cancel').click();
    await page.locator('.flash .msg.error', { hasText: '409 wrong_state' }).waitFor();
    assert.deepEqual(errors.filter((e) => !/Failed to load resource: the server responded with a status of 409/.test(e)), []);
    await context.close();
  });

  test("a running task's progress appears live on its page", async () => {
    // The agent registered in before() never heartbeats: on a loaded machine the tests before
    // this one can outlast its 15 s heartbeat timeout, so it registers again (as an agent would).
    await s.call('POST', '/v1/agents', { id: 'worker-1', name: 'Worker <one>', capabilities: ['gpu', 'ffmpeg'], max_concurrency: 4 });
    const claim = await s.call('POST', '/v1/claims', { agent_id: 'worker-1', queues: ['video'], max: 1 });
    const t = claim.tasks.find((x) => x.id === runningId);
    assert.ok(t);
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/tasks/${runningId}`);
    await page.locator('.live.on').waitFor();
    await page.getByText('No progress reported.').waitFor();
    await s.call('POST', `/v1/tasks/${runningId}/progress`, { lease_token: t.lease.token, percent: 42, message: 'encoding frame 1200' });
    await page.locator('#progress', { hasText: 'encoding frame 1200' }).waitFor({ timeout: 5000 });
    await page.locator('#progress', { hasText: '42%' }).waitFor();
    await s.call('POST', `/v1/tasks/${runningId}/complete`, { lease_token: t.lease.token, result: { url: 'out.mp4' } });
    await page.locator('#result', { hasText: 'out.mp4' }).waitFor({ timeout: 5000 });
    await page.locator('.live.done').waitFor();
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("a waiting task's page shows its dependencies, and it turns ready when they finish", async () => {
    const first = await s.call('POST', '/v1/tasks', { queue: 'plans', kind: 'plan' });
    const then = await s.call('POST', '/v1/tasks', { queue: 'plans', kind: 'review', depends_on: [first.id], deadline_in_ms: 3600000 });
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/tasks/${then.id}`);
    await page.locator('.badge.state-waiting').first().waitFor();
    await page.locator('#depends-on', { hasText: `#${first.id}` }).waitFor();
    await page.locator('#depends-on .badge.state-ready').waitFor();
    await page.getByText('Deadline').waitFor();
    const claim = await s.call('POST', '/v1/claims', { agent_id: 'planner', queues: ['plans'], max: 1 });
    assert.equal(claim.tasks[0].id, first.id);
    await s.call('POST', `/v1/tasks/${first.id}/complete`, { lease_token: claim.tasks[0].lease.token, result: 'ok' });
    await page.locator('.badge.state-ready').first().waitFor({ timeout: 5000 });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("a parent waiting for its children links them, and each child links its parent", async () => {
    const { id: parent } = await s.call('POST', '/v1/tasks', { queue: 'fanout', kind: 'plan' });
    const lease = (await s.call('POST', '/v1/claims', { agent_id: 'planner', queues: ['fanout'], max: 1 })).tasks[0].lease.token;
    const kids = (await s.call('POST', `/v1/tasks/${parent}/children`, { lease_token: lease, tasks: [{ queue: 'fanout-work' }, { queue: 'fanout-work' }] })).tasks.map((t) => t.id);
    await s.call('POST', `/v1/tasks/${parent}/wait-children`, { lease_token: lease });
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/tasks/${parent}`);
    await page.locator('.badge.state-waiting_children').first().waitFor();
    await page.getByText('Children (2)').waitFor();
    for (const k of kids) await page.locator('#children a', { hasText: `#${k}` }).waitFor();
    await page.locator('#children a', { hasText: `#${kids[0]}` }).click();
    await page.locator('h1', { hasText: `Task #${kids[0]}` }).waitFor();
    await page.locator('#parent', { hasText: `#${parent}` }).waitFor();
    await page.goto(`${s.base}/#/tasks?state=waiting_children`);
    await page.getByRole('link', { name: `#${parent}` }).first().waitFor();
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('task search filters and pages (50 rows a page)', async () => {
    const tasks = [];
    for (let i = 0; i < 55; i++) tasks.push({ queue: 'many', kind: i % 5 === 0 ? 'fifth' : 'other', payload: { i } });
    await s.call('POST', '/v1/tasks', { tasks });
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/tasks`);
    await page.locator('#f-queue').fill('many');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/#\/tasks\?queue=many$/);
    const rows = page.locator('main table tbody tr');
    await page.getByText('Page 1 · 50 shown').waitFor();
    assert.equal(await rows.count(), 50);
    await page.getByRole('button', { name: 'Next →' }).click();
    await page.getByText('Page 2 · 5 shown').waitFor();
    assert.equal(await rows.count(), 5);
    await page.getByRole('button', { name: '← Previous' }).click();
    await page.getByText('Page 1 · 50 shown').waitFor();
    await page.locator('#f-kind').fill('fifth');
    await page.locator('#f-state').selectOption('ready');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('Page 1 · 11 shown').waitFor();
    assert.match(page.url(), /kind=fifth/);
    // a time window that ends before these tasks were created finds none
    await page.locator('#f-before').fill('2001-01-01T00:00:00');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('No tasks match.').waitFor();
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('10,000 tasks in a queue: the pages show one page of rows, quickly', async () => {
    for (let b = 0; b < 10; b++) {
      const tasks = Array.from({ length: 1000 }, (_, i) => ({ queue: 'bulk', kind: 'k', payload: b * 1000 + i }));
      await s.call('POST', '/v1/tasks', { tasks });
    }
    const { context, page, errors } = await openPage();
    const started = Date.now();
    await page.goto(`${s.base}/#/tasks?queue=bulk`);
    await page.locator('table tbody tr').first().waitFor();
    assert.equal(await page.locator('table tbody tr').count(), 50, 'one page of 50 rows');
    await page.goto(`${s.base}/#/queues/bulk`);
    await page.locator('table tbody tr').first().waitFor();
    assert.ok(await page.locator('table tbody tr').count() <= 60, 'the queue page pages its tasks too');
    const took = Date.now() - started;
    // Generous: a frozen page (10,000 rows rendered) takes far longer on this machine.
    assert.ok(took < 8000, `took ${took} ms`);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('text meets WCAG AA contrast (4.5:1) on every page', async () => {
    const { context, page, errors } = await openPage();
    for (const route of ['#/', '#/tasks', `#/tasks/${deadId}`, '#/dead', '#/agents', '#/cluster', '#/autoscaler', '#/adapters', '#/schedules', '#/audit']) {
      await page.goto(`${s.base}/${route}`);
      await page.locator('main h1').first().waitFor();
      await page.waitForTimeout(300);
      const low = await page.evaluate(() => {
        const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
        const lum = ([r, g, b]) => {
          const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
          return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
        };
        const background = (el) => {
          for (let e = el; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
          }
          return [255, 255, 255];
        };
        const out = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
          const el = n.parentElement;
          if (!n.textContent.trim() || !el || !el.getClientRects().length) continue;
          const st = getComputedStyle(el);
          if (st.visibility === 'hidden' || st.display === 'none') continue;
          const fg = lum(rgb(st.color));
          const bg = lum(background(el));
          const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
          if (ratio < 4.5) out.push(`${n.textContent.trim().slice(0, 30)} (${ratio.toFixed(2)}, ${st.color} on ${getComputedStyle(el).backgroundColor})`);
        }
        return out;
      });
      assert.deepEqual(low, [], `${route}: text below 4.5:1`);
    }
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('draining an agent from the agents page', async () => {
    await s.call('POST', '/v1/agents', { id: 'drain-me', capabilities: ['x'] });
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/agents`);
    await page.locator('button[data-drain="drain-me"]').click();
    await page.locator('.flash .msg.ok', { hasText: 'Agent drain-me is draining' }).waitFor();
    assert.equal((await s.call('GET', '/v1/agents/drain-me')).status, 'draining');
    await page.locator('button[data-drain="drain-me"]').waitFor({ state: 'detached' });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('an admin edits queue settings and sees the API error for a bad value', async () => {
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/queues/emails`);
    await page.locator('#set-lease_ms').fill('45000');
    await page.getByRole('button', { name: 'Save overrides' }).click();
    await page.locator('.flash .msg.ok', { hasText: 'lease_ms=45000' }).waitFor();
    const q = await s.call('GET', '/v1/queues/emails');
    assert.equal(q.overrides.lease_ms, 45000);
    await page.locator('#set-max_attempts').fill('0');
    await page.getByRole('button', { name: 'Save overrides' }).click();
    await page.locator('.settings .msg.error', { hasText: '400 invalid_request' }).waitFor();
    // the refused request printed a console error ("Failed to load resource"): that is the browser, not the page
    assert.deepEqual(errors.filter((e) => !/Failed to load resource/.test(e)), []);
    await context.close();
  });

  test('an admin sets concurrency and rate limits and fairness on a queue page and sees keys at their limit', async () => {
    const a = await s.call('POST', '/v1/tasks', { queue: 'calls', kind: 'llm', concurrency_key: 'openai' });
    await s.call('POST', '/v1/tasks', { queue: 'calls', kind: 'llm', concurrency_key: 'openai' });
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/tasks/${a.id}`);
    await page.locator('#concurrency-key', { hasText: 'openai' }).waitFor();
    await page.goto(`${s.base}/#/queues/calls`);
    await page.locator('#limits-summary', { hasText: 'No limit for every key' }).waitFor();
    await page.locator('#limit-per-key').fill('1');
    await page.locator('#limit-keys').fill('anthropic=4\nbroken line');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.locator('#limits-form .msg.error', { hasText: 'line 2' }).waitFor();
    assert.equal((await s.call('GET', '/v1/queues/calls/limits')).concurrency_per_key, null, 'nothing was sent');
    await page.locator('#limit-keys').fill('anthropic=4');
    await page.locator('#limit-rate').fill('1/1h');
    await page.locator('#limit-key-rates').fill('openai=10/1m\nanthropic=fast');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.locator('#limits-form .msg.error', { hasText: 'line 2: “fast” is not a rate' }).waitFor();
    assert.equal((await s.call('GET', '/v1/queues/calls/limits')).rate, null, 'nothing was sent');
    await page.locator('#limit-key-rates').fill('openai=10/1m');
    await page.getByLabel('Fair: keys take turns within a priority').check();
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.locator('.flash .msg.ok', { hasText: 'Saved the limits of queue calls' }).waitFor();
    const l = await s.call('GET', '/v1/queues/calls/limits');
    assert.deepEqual([l.concurrency_per_key, l.key_concurrency], [1, { anthropic: 4 }]);
    assert.deepEqual([l.rate, l.rate_per_key, l.key_rate], [{ starts: 1, period_ms: 3600000 }, null, { openai: { starts: 10, period_ms: 60000 } }]);
    assert.equal(l.fair, true);
    await s.call('POST', '/v1/claims', { agent_id: 'caller', queues: ['calls'], max: 5 });
    await page.reload();
    await page.locator('#limits-summary', { hasText: 'At most 1 leased per key, 1 key with a limit of its own; 1 key at the limit now.' }).waitFor();
    await page.locator('#rates-summary', { hasText: 'At most 1 per 1h in the queue, none per key, 1 key with a rate of its own; 0 keys out of starts now; the queue starts its next task in 59 min' }).waitFor();
    await page.locator('#fairness-summary', { hasText: 'Fair: keys take turns within a priority; served last: openai.' }).waitFor();
    await page.locator('#limits tbody tr', { hasText: 'openai' }).waitFor();
    // The form shows the rates as they are, so saving it again keeps them.
    assert.equal(await page.locator('#limit-rate').inputValue(), '1/1h');
    assert.equal(await page.locator('#limit-key-rates').inputValue(), 'openai=10/1m');
    assert.equal(await page.locator('#limit-fair').isChecked(), true);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('an admin creates a schedule from the form, sees it fire, pauses, resumes and deletes it', async () => {
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/schedules`);
    await page.locator('table.schedules tbody tr', { hasText: 'nightly-digest' }).waitFor();
    await page.locator('#sched-name').fill('heartbeat');
    await page.locator('#sched-mode').selectOption('every');
    await page.locator('#sched-when').fill('1 minute');
    await page.locator('#sched-queue').fill('pings');
    await page.locator('#sched-payload').fill('{"n": 1}');
    await page.getByRole('button', { name: 'Save schedule' }).click();
    await page.locator('#schedule-form .msg.error', { hasText: 'is not a period' }).waitFor();
    await page.locator('#sched-when').fill('1s');
    await page.locator('#sched-payload').fill('{n: 1}');
    await page.getByRole('button', { name: 'Save schedule' }).click();
    await page.locator('#schedule-form .msg.error', { hasText: 'Payload: not JSON' }).waitFor();
    // The server's refusal shows as it is: a cron expression that is not one.
    await page.locator('#sched-mode').selectOption('cron');
    await page.locator('#sched-when').fill('every day');
    await page.locator('#sched-payload').fill('{"n": 1}');
    await page.getByRole('button', { name: 'Save schedule' }).click();
    await page.locator('#schedule-form .msg.error', { hasText: 'is not a cron expression' }).waitFor();
    assert.equal((await s.call('GET', '/v1/schedules')).schedules.some((x) => x.name === 'heartbeat'), false, 'nothing was saved');
    await page.locator('#sched-mode').selectOption('every');
    await page.locator('#sched-when').fill('1s');
    await page.getByRole('button', { name: 'Save schedule' }).click();
    await page.locator('.flash .msg.ok', { hasText: 'Saved schedule heartbeat' }).waitFor();
    const saved = await s.call('GET', '/v1/schedules/heartbeat');
    assert.deepEqual([saved.every_ms, saved.task.queue, saved.task.payload, saved.missed, saved.paused], [1000, 'pings', { n: 1 }, 'skip', false]);
    // It fires: the page (refreshed every 5 s) links the last run's task.
    const row = page.locator('table.schedules tbody tr', { hasText: 'heartbeat' });
    await row.locator('a[href^="#/tasks/"]').waitFor({ timeout: 15000 });
    const fired = await s.call('GET', '/v1/schedules/heartbeat');
    assert.ok(fired.fired >= 1 && fired.last_task_id, 'fired');
    assert.equal((await s.call('GET', `/v1/tasks/${fired.last_task_id}`)).idempotency_key, `schedule:heartbeat:${fired.last_run_ms}`);
    await row.getByRole('button', { name: 'Pause' }).click();
    await row.locator('.badge', { hasText: 'paused' }).waitFor();
    assert.equal((await s.call('GET', '/v1/schedules/heartbeat')).paused, true);
    await row.getByRole('button', { name: 'Resume' }).click();
    await row.getByRole('button', { name: 'Pause' }).waitFor();
    const resumed = await s.call('GET', '/v1/schedules/heartbeat');
    assert.deepEqual([resumed.paused, resumed.every_ms, resumed.task.payload], [false, 1000, { n: 1 }], 'resumed as it was');
    // Edit fills the form with the schedule as it is.
    await page.locator('table.schedules tbody tr', { hasText: 'nightly-digest' }).getByRole('button', { name: 'Edit' }).click();
    assert.deepEqual([await page.locator('#sched-when').inputValue(), await page.locator('#sched-timezone').inputValue(), await page.locator('#sched-kind').inputValue()],
      ['0 0 2 * * *', 'Europe/Berlin', 'digest']);
    page.once('dialog', (d) => d.accept());
    await row.getByRole('button', { name: 'Delete' }).click();
    await page.locator('.flash .msg.ok', { hasText: 'Deleted schedule heartbeat' }).waitFor();
    assert.equal((await s.call('GET', '/v1/schedules')).schedules.some((x) => x.name === 'heartbeat'), false);
    assert.equal((await s.call('GET', `/v1/tasks/${fired.last_task_id}`)).id, fired.last_task_id, 'its tasks stay');
    assert.deepEqual(errors.filter((e) => !/status of 400/.test(e)), []);
    await context.close();
  });

  test('at 390 px the overview has no horizontal overflow', async () => {
    const { context, page, errors } = await openPage({ viewport: { width: 390, height: 844 } });
    for (const hash of ['#/', '#/dead', `#/tasks/${deadId}`]) {
      await page.goto(`${s.base}/${hash}`);
      await page.locator('h1').first().waitFor();
      await page.locator('main table, main .empty, main dl').first().waitFor();
      const { scroll, client } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
      assert.ok(scroll <= client, `${hash}: page is ${scroll}px wide in a ${client}px viewport`);
      const body = await page.evaluate(() => document.body.scrollWidth);
      assert.ok(body <= 390, `${hash}: body is ${body}px wide`);
    }
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('keyboard: the navigation is reachable with Tab and shows focus', async () => {
    const { context, page } = await openPage();
    await page.goto(`${s.base}/#/`);
    await page.locator('#nav a').first().waitFor();
    let found = false;
    for (let i = 0; i < 12 && !found; i++) {
      await page.keyboard.press('Tab');
      found = await page.evaluate(() => document.activeElement && document.activeElement.textContent === 'Agents');
    }
    assert.ok(found, 'Tab reaches the Agents link');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none');
    await page.keyboard.press('Enter');
    await page.locator('h1', { hasText: 'Agents' }).waitFor();
    await context.close();
  });
});

describe('console with auth on', () => {
  let s;
  let reader;
  let deadId;

  before(async () => {
    s = await startServer({ auth: true });
    reader = (await s.call('POST', '/v1/tokens', { name: 'viewer', role: 'reader' })).token;
    deadId = await makeDead(s, 'orders');
  });

  after(async () => {
    if (s) await s.stop();
  });

  // 401 and 403 answers make chromium log "Failed to load resource": expected here.
  const pageErrors = (errors) => errors.filter((e) => !/Failed to load resource: the server responded with a status of 40[13]/.test(e));

  test('the token form signs in; the token stays out of the URL; sign out clears it', async () => {
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/`);
    await page.locator('#signin-form').waitFor();
    await page.locator('#token').fill('wrong-token-wrong-token');
    await page.locator('#signin').click();
    await page.locator('#signin-form .msg.error', { hasText: 'unauthorized' }).waitFor();
    await page.locator('#token').fill(ADMIN);
    await page.locator('#signin').click();
    await page.locator('h1', { hasText: 'Overview' }).waitFor();
    await page.getByRole('link', { name: 'orders' }).waitFor();
    assert.ok(!page.url().includes(ADMIN));
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    assert.ok(await page.evaluate((t) => Object.keys(sessionStorage).some((k) => sessionStorage.getItem(k) === t), ADMIN));
    // admins see write buttons and the audit trail
    await page.goto(`${s.base}/#/dead`);
    await page.locator(`button[data-retry="${deadId}"]`).waitFor();
    await page.getByRole('link', { name: 'Audit' }).click();
    await page.getByText('token.create').first().waitFor();
    await page.locator('#signout').click();
    await page.locator('#signin-form').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.deepEqual(pageErrors(errors), []);
    await context.close();
  });

  test('a reader sees no write buttons, and a forged write is refused with 403', async () => {
    const { context, page, errors } = await openPage();
    await page.goto(`${s.base}/#/dead`);
    await page.locator('#token').fill(reader);
    await page.locator('#signin').click();
    await page.locator('h1', { hasText: 'Dead letters' }).waitFor();
    await page.getByRole('link', { name: `#${deadId}` }).waitFor();
    await page.getByText('Retrying and cancelling need an admin token.').waitFor();
    assert.equal(await page.locator('main button', { hasText: /Retry|Cancel/ }).count(), 0);
    assert.equal(await page.locator('#nav a', { hasText: 'Audit' }).count(), 0);
    await page.goto(`${s.base}/#/tasks/${deadId}`);
    await page.getByText('boom <b>not html</b>').first().waitFor();
    assert.equal(await page.locator('#task-retry, #task-cancel').count(), 0);
    await page.goto(`${s.base}/#/queues/orders`);
    await page.getByText('Max attempts').first().waitFor();
    assert.equal(await page.locator('form.settings').count(), 0);
    await page.goto(`${s.base}/#/agents`);
    await page.locator('h1', { hasText: 'Agents' }).waitFor();
    assert.equal(await page.locator('button[data-drain]').count(), 0);
    await s.call('PUT', '/v1/schedules/hourly', { every_ms: 3600000, task: { queue: 'orders' } });
    await page.goto(`${s.base}/#/schedules`);
    await page.locator('table.schedules tbody tr', { hasText: 'hourly' }).waitFor();
    assert.equal(await page.locator('#schedule-form').count(), 0);
    assert.equal(await page.locator('button[data-pause], button[data-delete], button[data-edit]').count(), 0);
    // every read page still renders for the reader
    for (const [hash, h1] of [['#/', 'Overview'], ['#/tasks', 'Tasks'], ['#/cluster', 'Cluster'], ['#/autoscaler', 'Autoscaler'], ['#/adapters', 'Adapters'], ['#/audit', 'Audit trail']]) {
      await page.goto(`${s.base}/${hash}`);
      await page.locator('h1', { hasText: h1 }).waitFor();
    }
    // a forged write from the page, with the reader's token, is refused
    const status = await page.evaluate(async (id) => {
      const tok = Object.values(sessionStorage)[0];
      const r = await fetch(`/v1/tasks/${id}/retry`, { method: 'POST', headers: { Authorization: `Bearer ${tok}` } });
      return { status: r.status, body: await r.json() };
    }, deadId);
    assert.equal(status.status, 403);
    assert.equal(status.body.error.code, 'forbidden');
    assert.equal((await s.call('GET', `/v1/tasks/${deadId}`)).state, 'dead');
    assert.deepEqual(pageErrors(errors), []);
    await context.close();
  });

  async function signIn(page, token, hash = '#/') {
    await page.goto(`${s.base}/${hash}`);
    await page.locator('#token').fill(token);
    await page.locator('#signin').click();
  }

  test('an admin creates a token (shown once) and revokes it from the tokens page', async () => {
    const { context, page, errors } = await openPage();
    await signIn(page, ADMIN, '#/tokens');
    await page.locator('h1', { hasText: 'API tokens' }).waitFor();
    await page.locator('#tok-name').fill('ci-producer');
    await page.locator('#tok-role').selectOption('producer');
    await page.locator('#tok-queues').fill('orders.*, mail');
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = await page.locator('#tok-secret').inputValue();
    assert.match(secret, /^mn_[0-9a-f]{16}_/);
    assert.ok(!page.url().includes(secret));
    // The new token works, with the role and patterns given on the page.
    const who = await s.call('GET', '/v1/whoami', undefined, secret);
    assert.deepEqual([who.role, who.name, who.queues], ['producer', 'ci-producer', ['orders.*', 'mail']]);
    const id = secret.split('_')[1];
    const row = page.locator('tr', { hasText: 'ci-producer' });
    await row.waitFor();
    page.once('dialog', (d) => d.accept());
    await row.locator(`button[data-revoke="${id}"]`).click();
    await page.locator('.flash .msg.ok', { hasText: `Revoked token ci-producer (${id})` }).waitFor();
    await row.getByText('revoked').waitFor();
    await assert.rejects(s.call('GET', '/v1/whoami', undefined, secret), /401/);
    // A token without a name is refused on the page, before any request.
    await page.getByRole('button', { name: 'Create token' }).click();
    await page.getByText('A token needs a name.').waitFor();
    assert.deepEqual(pageErrors(errors), []);
    await context.close();
  });

  test('an admin changes the engine settings; a reader sees them without a form', async () => {
    const { context, page, errors } = await openPage();
    await signIn(page, ADMIN, '#/settings');
    await page.locator('h1', { hasText: 'Engine settings' }).waitFor();
    await page.locator('#cfg-max_attempts').fill('7');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('.flash .msg.ok', { hasText: 'max_attempts=7' }).waitFor();
    assert.equal((await s.call('GET', '/v1/config')).engine.max_attempts, 7);
    await page.locator('#cfg-lease_ms').fill('0');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('form.settings .msg.error', { hasText: '400' }).waitFor();
    assert.notEqual((await s.call('GET', '/v1/config')).engine.lease_ms, 0, 'refused, unchanged');
    await page.locator('#signout').click();
    await signIn(page, reader, '#/settings');
    await page.locator('h1', { hasText: 'Engine settings' }).waitFor();
    await page.locator('td', { hasText: /^7$/ }).waitFor();
    assert.equal(await page.locator('form.settings').count(), 0);
    assert.equal(await page.locator('#nav a', { hasText: 'Tokens' }).count(), 0);
    await page.goto(`${s.base}/#/tokens`);
    await page.getByText('Tokens are managed with an admin token.').waitFor();
    const errs = pageErrors(errors).filter((e) => !/status of 400/.test(e));
    assert.deepEqual(errs, []);
    await context.close();
  });

  test('each role sees the navigation it may use', async () => {
    const want = {
      producer: ['Overview', 'Tasks', 'Dead letters'],
      worker: ['Overview', 'Tasks', 'Dead letters', 'Autoscaler'],
      metrics: ['Overview', 'Autoscaler'],
      reader: ['Overview', 'Tasks', 'Dead letters', 'Agents', 'Cluster', 'Autoscaler', 'Adapters', 'Schedules', 'Settings'],
    };
    for (const [role, links] of Object.entries(want)) {
      const tok = (await s.call('POST', '/v1/tokens', { name: `nav-${role}`, role })).token;
      const { context, page, errors } = await openPage();
      await signIn(page, tok);
      await page.locator('h1', { hasText: 'Overview' }).waitFor();
      const nav = (await page.locator('#nav a').allTextContents()).map((x) => x.trim());
      assert.deepEqual(nav, links, role);
      assert.deepEqual(pageErrors(errors), [], role);
      await context.close();
    }
  });
});
