#!/usr/bin/env node
// Screenshots of the web console's main pages, for docs/console.md.
//
//   (cd tests/browser && npm ci)      # playwright-core, once
//   MINION_BIN=target/debug/minion node scripts/console-screenshots.mjs
//
// Starts a throwaway node (no auth, loopback), fills it with a little history, and writes PNGs
// to docs/console/. MINION_CONSOLE_DIR, when set, is passed to the node (console files from disk).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { chromium } = await import(join(root, 'tests/browser/node_modules/playwright-core/index.mjs'));
const BIN = process.env.MINION_BIN || join(root, 'target/debug/minion');
const OUT = join(root, 'docs/console');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

const dir = mkdtempSync(join(tmpdir(), 'minion-shots-'));
const port = await freePort();
const raft = await freePort();
writeFileSync(join(dir, 'minion.toml'), '[[pools]]\nname = "render"\nqueues = ["video"]\npreset = "aggressive"\n');
const env = { ...process.env, MINION_LOG_LEVEL: 'warn' };
const child = spawn(BIN, ['serve', '--config', join(dir, 'minion.toml'), '--data-dir', join(dir, 'data'),
  '--listen', `127.0.0.1:${port}`, '--raft-listen', `127.0.0.1:${raft}`], { env, stdio: 'inherit' });
const base = `http://127.0.0.1:${port}`;
const call = async (method, path, body) => {
  const r = await fetch(base + path, { method, headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const t = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${t}`);
  return t ? JSON.parse(t) : null;
};

let browser;
try {
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${base}/readyz`)).ok) break; } catch { /* not yet */ }
    if (i > 300) throw new Error('node not ready');
    await sleep(100);
  }
  // A little history.
  await call('POST', '/v1/agents', { id: 'gpu-worker-1', name: 'render box 1', capabilities: ['gpu', 'ffmpeg'], max_concurrency: 4 });
  await call('POST', '/v1/agents', { id: 'mailer-1', capabilities: ['smtp'], max_concurrency: 16 });
  await call('PUT', '/v1/queues/billing', { max_attempts: 1, lease_ms: 60000 });
  for (let i = 0; i < 12; i++) await call('POST', '/v1/tasks', { queue: 'emails', kind: 'welcome', payload: { to: `user${i}@example.com` } });
  for (let i = 0; i < 4; i++) await call('POST', '/v1/tasks', { queue: 'billing', kind: 'charge', payload: { invoice: 1000 + i, amount_cents: 4200 } });
  const bill = await call('POST', '/v1/claims', { agent_id: 'mailer-1', queues: ['billing'], max: 3 });
  for (const t of bill.tasks) await call('POST', `/v1/tasks/${t.id}/fail`, { lease_token: t.lease.token, error: 'card declined: insufficient funds' });
  const video = await call('POST', '/v1/tasks', { queue: 'video', kind: 'encode', payload: { file: 'intro.mov', preset: '1080p' } });
  const v = (await call('POST', '/v1/claims', { agent_id: 'gpu-worker-1', queues: ['video'], max: 1 })).tasks[0];
  for (const [pct, msg] of [[10, 'probing input'], [35, 'encoding pass 1'], [62, 'encoding pass 2 (frame 2400/3900)']]) {
    await call('POST', `/v1/tasks/${v.id}/progress`, { lease_token: v.lease.token, percent: pct, message: msg });
  }
  const e = (await call('POST', '/v1/claims', { agent_id: 'mailer-1', queues: ['emails'], max: 2 })).tasks;
  await call('POST', `/v1/tasks/${e[0].id}/complete`, { lease_token: e[0].lease.token, result: { message_id: '<a1@mx>' } });
  await call('POST', '/v1/agents/mailer-1/drain', {});
  await call('POST', '/v1/tokens', { name: 'shop-producer', role: 'producer', queues: ['orders.*'] });
  await call('POST', '/v1/tokens', { name: 'dashboards', role: 'reader' });
  await call('PUT', '/v1/adapters/kafka-orders', { kind: 'kafka', running: true, ingested: 18234, rejected: 3, lag: 12, last_error: null });

  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  mkdirSync(OUT, { recursive: true });
  const shots = [
    ['overview', '#/', 'Queues'],
    ['queue', '#/queues/billing', 'Settings'],
    ['tasks', '#/tasks?queue=emails', 'Results'],
    ['task', `#/tasks/${video.id}`, 'Progress'],
    ['dead-letters', '#/dead', 'Dead tasks'],
    ['agents', '#/agents', 'render box 1'],
    ['cluster', '#/cluster', 'Members'],
    ['autoscaler', '#/autoscaler?pool=render', 'Pools'],
    ['audit', '#/audit', 'queue.set'],
    ['tokens', '#/tokens', 'New token'],
    ['settings', '#/settings', 'Engine settings'],
  ];
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  for (const [name, hash, text] of shots) {
    await page.goto(`${base}/${hash}`);
    await page.getByText(text).first().waitFor();
    await sleep(300);
    await page.screenshot({ path: join(OUT, `${name}.png`) });
    console.log(`docs/console/${name}.png`);
  }
  const narrow = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await narrow.goto(`${base}/#/`);
  await narrow.getByText('Queues').first().waitFor();
  await sleep(300);
  await narrow.screenshot({ path: join(OUT, 'overview-390.png') });
  console.log('docs/console/overview-390.png');
} finally {
  if (browser) await browser.close();
  child.kill('SIGTERM');
  await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
  rmSync(dir, { recursive: true, force: true });
}
