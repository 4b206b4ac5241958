// Browser tests of the status page in headless Chromium, driven over the Chrome DevTools Protocol
// with Node's built-in WebSocket (no npm packages: the CI machine may be offline).
//
//   node --experimental-websocket tests/browser/run.mjs [path/to/tend]
//
// It writes a supervisor.toml into a fresh temp dir (two emulated Telethon services from `tend sim`,
// plus a shell service that prints hostile lines), runs `tend up`, and in the browser: logs in, sees
// both cards turn green, stops a service through the confirmation and watches its card turn red live,
// filters the logs by error type, runs diagnostics, starts a flood recovery and sees its countdown,
// sees the Schedules section list a schedule with its next run and last outcome, sees the clocks tick,
// the zombie named (a fourth sim in a start-up FloodWait), dead runs cleared, no word split at 390 px,
// checks that injected markup never runs, and that the page fits a phone screen.
// UPDATE_SCREENSHOT=1 also saves docs/screenshot.png.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tend = path.resolve(process.argv[2] || path.join(repo, 'target/debug/tend'));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 20000;
const children = [];
const dirs = [];

function cleanup() {
  for (const c of children) { try { c.kill('SIGTERM'); } catch (_) {} }
}
process.on('exit', () => {
  cleanup();
  for (const d of dirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch (_) {} }
});
process.on('SIGINT', () => process.exit(130));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what, fn, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for: ${what} (last: ${last})`);
    await sleep(50);
  }
}

// ---------- the world ----------

async function setUp() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tend-browser-'));
  dirs.push(dir);
  const [web, p1, p2, p3] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const hash = spawnSync(tend, ['hash-password'], { input: 'browser-pass\n' }).stdout.toString().trim();
  if (!hash.startsWith('$argon2id$')) throw new Error('tend hash-password failed: ' + hash);
  const sim = (svc, port) => `tend sim --service ${svc} --port ${port} --account acct_${svc} --state-dir sim --time-scale 0.01`;
  const noisy = "echo '<script>window.__xss=1</script> xss'; echo '<img src=x onerror=\"window.__xss=2\"> xss'; " +
    "while true; do " +
    "echo 'INFO:telethon.client.users:Sleeping for 27s (0:00:27) on GetDialogsRequest flood wait' >&2; " +
    "echo 'ERROR:send_text_bot:send_text failed: ValueError: Не удалось найти чат -1003519196381 в диалогах' >&2; " +
    "sleep 1; done";
  const config = `
[supervisor]
state_dir = "state"
log_dir = "logs"

[groups.telegram]
min_start_spacing = "1s"
max_starts = 100
window = "1h"
[groups.telegram.recovery]
cooldown = "90s"
pause = "1s"
ready_timeout = "10s"
auto = false

[services.send_text]
command = "${sim('send_text', p1)}"
group = "telegram"
port = ${p1}
start_grace = "200ms"
stop_timeout = "3s"

[services.send_media]
command = "${sim('send_media', p2)}"
group = "telegram"
port = ${p2}
start_grace = "200ms"
stop_timeout = "3s"

[services.noisy]
command = ["sh", "-c", ${JSON.stringify(noisy)}]
start_grace = "200ms"

# The zombie: a FloodWait at start-up longer than Telethon sleeps, so HTTP is up and the cache empty.
[services.stuck]
command = "tend sim --service send_text --port ${p3} --account acct_stuck --state-dir sim --time-scale 0.01 --force-flood 100000"
port = ${p3}
start_grace = "200ms"

[checks.health]
kind = "http"
url = "http://{host}:{port}/health"
body_contains = "ok"
services = ["send_text", "send_media", "stuck"]
interval = "1s"
timeout = "500ms"

[checks.cache]
kind = "json"
url = "http://{host}:{port}/stats"
pointer = "/cache_size"
min = 1
warn_below = 3900
readiness = true
services = ["send_text", "send_media", "stuck"]
interval = "1s"
timeout = "500ms"

[[schedule]]
name = "heartbeat"
cron = "*/2 * * * * *"
action = "exec"
command = ["true"]

[web]
listen = "127.0.0.1:${web}"
[[web.users]]
name = "ops"
password_hash = "${hash}"
role = "operator"
`;
  fs.writeFileSync(path.join(dir, 'supervisor.toml'), config);
  const err = fs.openSync(path.join(dir, 'tend.stderr'), 'w');
  const daemon = spawn(tend, ['-c', path.join(dir, 'supervisor.toml'), 'up'], { stdio: ['ignore', 'ignore', err] });
  children.push(daemon);
  await waitUntil('the status page', () => new Promise((resolve) => {
    const s = net.connect(web, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  }));
  return { dir, url: `http://127.0.0.1:${web}/` };
}

// ---------- Chromium over CDP ----------

async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tend-chromium-'));
  dirs.push(profile);
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${profile}`, '--remote-debugging-port=0', '--window-size=1280,900', 'about:blank'];
  const proc = spawn(chromiumPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(proc);
  const wsUrl = await new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('chromium did not start: ' + buf)), TIMEOUT);
    proc.stderr.on('data', (d) => {
      buf += d.toString();
      const m = buf.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) { clearTimeout(t); resolve(m[1]); }
    });
    proc.on('exit', (code) => reject(new Error(`chromium exited ${code}: ${buf}`)));
  });
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  let id = 0;
  const pending = new Map();
  const listeners = [];
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error))); else resolve(msg.result);
    } else if (msg.method) {
      for (const l of listeners) l(msg);
    }
  };
  const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
    const mid = ++id;
    pending.set(mid, { resolve, reject });
    ws.send(JSON.stringify({ id: mid, method, params, sessionId }));
  });
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const page = (method, params) => send(method, params, sessionId);
  const errors = [];
  listeners.push((msg) => {
    if (msg.sessionId !== sessionId) return;
    if (msg.method === 'Runtime.exceptionThrown') errors.push(msg.params.exceptionDetails.text + ' ' + JSON.stringify(msg.params.exceptionDetails.exception?.description || ''));
  });
  await page('Page.enable');
  await page('Runtime.enable');
  const evaluate = async (expression) => {
    const r = await page('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error('page error: ' + (r.exceptionDetails.exception?.description || r.exceptionDetails.text));
    return r.result.value;
  };
  return { page, evaluate, errors, close: () => { ws.close(); proc.kill('SIGTERM'); } };
}

// ---------- the test ----------

const results = [];
async function step(name, fn) {
  const t = Date.now();
  try {
    await fn();
    results.push(`ok   ${name} (${Date.now() - t} ms)`);
    console.log(`ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    throw e;
  }
}

async function main() {
  const started = Date.now();
  const world = await setUp();
  const b = await launch();
  const { evaluate: ev, page } = b;
  const waitJs = (what, expr, timeout) => waitUntil(what, () => ev(expr), timeout);
  const card = (name) => `document.querySelector('.card[data-service="${name}"]')`;

  await page('Page.navigate', { url: world.url });

  await step('log in', async () => {
    await waitJs('the login form', `!document.getElementById('login-view').hidden`);
    await ev(`document.getElementById('login-user').value = 'ops';
              document.getElementById('login-password').value = 'wrong';
              document.getElementById('login-submit').click(); true`);
    await waitJs('the wrong-password message', `document.getElementById('login-error').textContent.includes('wrong')`);
    await ev(`document.getElementById('login-password').value = 'browser-pass';
              document.getElementById('login-submit').click(); true`);
    await waitJs('the app', `!document.getElementById('app-view').hidden`);
  });

  await step('both cards turn green', async () => {
    await waitJs('send_text and send_media green', `${card('send_text')}?.dataset.color === 'green' && ${card('send_media')}?.dataset.color === 'green'`)
      .catch(async (e) => { throw new Error(e.message + ': ' + await ev(`[...document.querySelectorAll('.card')].map(c => c.dataset.service + '=' + c.dataset.state + '/' + c.dataset.color).join(' ')`)); });
  });

  await step('cards in file order, port on each, named state in the card', async () => {
    const order = await ev(`[...document.querySelectorAll('.card')].map(c => c.dataset.service).join(',')`);
    if (order !== 'send_text,send_media,noisy,stuck') throw new Error('cards in order ' + order);
    const port = await ev(`${card('send_text')}.querySelector('.port')?.textContent || ''`);
    if (!/^:\d+$/.test(port)) throw new Error('no port on the card: ' + port);
    await waitJs('a named running state', `${card('send_text')}.querySelector('.condition.cond-running') !== null`);
    const buttons = await ev(`['start','stop','restart','reload'].map(b => b + '=' + ${card('send_text')}.querySelector('button.' + b).disabled).join(' ')`);
    if (buttons !== 'start=true stop=false restart=false reload=false') throw new Error('buttons on a running service: ' + buttons);
    const accounts = await ev(`document.querySelector('#accounts [data-account="telegram"]')?.textContent || ''`);
    if (!accounts.includes('telegram')) throw new Error('no account summary: ' + accounts);
  });

  await step('the zombie is named on its card, in the title and in /api/status', async () => {
    await waitJs('the zombie state', `${card('stuck')}?.querySelector('.condition.cond-zombie') !== null`, 30000)
      .catch(async (e) => { throw new Error(e.message + ': ' + await ev(`${card('stuck')}?.textContent`)); });
    const title = await ev(`document.title`);
    if (!title.includes('zombie stuck')) throw new Error('the title says: ' + title);
    const api = await ev(`(async () => (await (await fetch('/api/status')).json()).services.find((s) => s.name === 'stuck').condition.name)()`);
    if (api !== 'zombie') throw new Error('/api/status says ' + api);
  });

  await step('uptimes tick every second between views and agree with /api/status', async () => {
    // Sample for ~5 s: the SSE view comes every 5 s, so 4+ distinct values mean the client ticks.
    const seen = [];
    const until = Date.now() + 5200;
    while (Date.now() < until) {
      seen.push(await ev(`${card('send_text')}.querySelector('.uptime')?.textContent || ''`));
      await sleep(250);
    }
    const distinct = [...new Set(seen)];
    if (distinct.length < 4) throw new Error('uptime moved only through ' + distinct.join(' | '));
    const agree = await ev(`(async () => {
      const a = await (await fetch('/api/status')).json();
      await new Promise((r) => setTimeout(r, 1200));
      const t0 = Date.now();
      const b = await (await fetch('/api/status')).json();
      const latency = Date.now() - t0;
      const mine = serverNow() - b.services.find((s) => s.name === 'send_text').since_ms;
      const api = b.services.find((s) => s.name === 'send_text').uptime_ms;
      const before = a.services.find((s) => s.name === 'send_text').uptime_ms;
      return JSON.stringify({ moved: api - before, diff: Math.abs(mine - api) - latency });
    })()`);
    const { moved, diff } = JSON.parse(agree);
    if (moved < 1000) throw new Error('/api/status uptime_ms moved ' + moved + ' ms in 1.2 s');
    if (diff > 1000) throw new Error('the page clock and /api/status differ by ' + diff + ' ms');
  });

  await step('Restart asks first and says what it costs', async () => {
    await ev(`${card('send_text')}.querySelector('button.restart').click(); true`);
    await waitJs('the confirmation', `document.getElementById('confirm').open`);
    const text = await ev(`document.getElementById('confirm-text').textContent`);
    if (!text.includes('full dialog fetch')) throw new Error('restart confirmation says: ' + text);
    await ev(`document.getElementById('confirm-cancel').click(); true`);
    await waitJs('the dialog closed', `!document.getElementById('confirm').open`);
  });

  await step('the schedules section shows each schedule, its next run and last outcome', async () => {
    await waitJs('the heartbeat row with a countdown and an ok run', `(() => {
      const row = document.querySelector('#schedules tr[data-schedule="heartbeat"]');
      return !!row && /in \\d+s/.test(row.querySelector('.next-in')?.textContent || '') && row.querySelector('.run.ok') !== null;
    })()`);
  });

  await step('stop a service with the confirmation; its card turns red live', async () => {
    await ev(`${card('send_media')}.querySelector('button.stop').click(); true`);
    await waitJs('the confirmation', `document.getElementById('confirm').open`);
    const title = await ev(`document.getElementById('confirm-title').textContent`);
    if (!title.includes('Stop send_media')) throw new Error('confirmation says: ' + title);
    await ev(`document.getElementById('confirm-reason').value = 'browser test'; document.getElementById('confirm-ok').click(); true`);
    await waitJs('send_media red', `${card('send_media')}.dataset.color === 'red'`)
      .catch(async (e) => { throw new Error(e.message + ': ' + await ev(`${card('send_media')}.dataset.state + '/' + ${card('send_media')}.dataset.color + ' ' + ${card('send_media')}.textContent`)); });
    const others = await ev(`${card('send_text')}.dataset.color`);
    if (others !== 'green') throw new Error('send_text is ' + others + ': ' + await ev(`${card('send_text')}.textContent`));
    await waitJs('the audit row', `[...document.querySelectorAll('#audit tbody tr')].some(r => r.textContent.includes('browser test'))`);
    // The dead run's values are gone from the card: no live checks, no cache; the last run is named.
    await waitJs('the dead run cleared', `(() => {
      const c = ${card('send_media')};
      return !c.querySelector('.lastchecks') && !c.querySelector('.uptime') && c.querySelector('.lastrun summary')?.textContent.startsWith('last run (ended');
    })()`);
    const cache = await ev(`[...${card('send_media')}.querySelectorAll('dt')].find(d => d.textContent === 'cache').nextSibling.textContent`);
    if (cache !== '—') throw new Error('a stopped card shows cache ' + cache);
    const buttons = await ev(`['start','stop','restart','reload'].map(b => b + '=' + ${card('send_media')}.querySelector('button.' + b).disabled).join(' ')`);
    if (buttons !== 'start=false stop=true restart=true reload=true') throw new Error('buttons on a stopped service: ' + buttons);
    const down = await ev(`${card('send_media')}.querySelector('.ago')?.textContent || ''`);
    if (!/ago$/.test(down)) throw new Error('no "ended ... ago" on the stopped card: ' + down);
  });

  await step('filter logs by error type', async () => {
    await waitJs('error types offered', `[...document.getElementById('log-type').options].some(o => o.value === 'FloodSleep')`);
    await ev(`{ const s = document.getElementById('log-type'); s.value = 'FloodSleep'; s.dispatchEvent(new Event('change')); true }`);
    const hint = await ev(`[...document.getElementById('log-type').options].find(o => o.value === 'FloodSleep').textContent`);
    if (!hint.includes('slept through')) throw new Error('FloodSleep is not explained: ' + hint);
    await waitJs('the FloodSleep warnings counted on the card', `(() => {
      const dt = [...${card('noisy')}.querySelectorAll('dt')].find(d => d.textContent === 'warnings');
      return dt && parseInt(dt.nextSibling.textContent, 10) > 0;
    })()`);
    await waitJs('FloodSleep lines only', `(() => {
      const lines = [...document.querySelectorAll('#log-lines .line')];
      return lines.length > 0 && lines.every(l => l.querySelector('.kind')?.textContent.includes('FloodSleep'));
    })()`);
  });

  await step('hostile log lines are shown as text and never run', async () => {
    await ev(`{ const s = document.getElementById('log-type'); s.value = ''; s.dispatchEvent(new Event('change')); true }`);
    await ev(`{ const q = document.getElementById('log-q'); q.value = 'xss'; document.getElementById('log-apply').click(); true }`);
    await waitJs('the payload lines', `(() => { const t = document.getElementById('log-lines').textContent; return t.includes('<script>') && t.includes('<img'); })()`);
    const text = await ev(`document.getElementById('log-lines').textContent`);
    if (!text.includes('<script>window.__xss=1</script>') || !text.includes('<img src=x onerror=')) throw new Error('payloads not shown verbatim: ' + text.slice(0, 300));
    const injected = await ev(`window.__xss === undefined && document.querySelectorAll('#log-lines img, #log-lines script').length === 0`);
    if (!injected) throw new Error('markup from a log line became DOM or ran');
    await waitJs('the failing chat row', `(async () => { await loadChats(); return document.querySelector('#chats tbody tr td')?.textContent === '-1003519196381'; })()`, 30000);
    await ev(`{ const q = document.getElementById('log-q'); q.value = ''; document.getElementById('log-apply').click(); true }`);
  });

  await step('run diagnostics', async () => {
    await ev(`document.getElementById('diagnose-button').click(); true`);
    await waitJs('the diagnosis', `(() => { const t = document.getElementById('diagnose-text').textContent; return t.includes('send_text') && !t.startsWith('running'); })()`, 30000);
    await ev(`document.getElementById('diagnose').close(); true`);
  });

  await step('the health strips fill and the page fits a phone', async () => {
    // A minute with any failed result is red (the first check may run before the service listens).
    await waitJs('filled history dots', `(async () => { await loadHistory(); return document.querySelectorAll('.strip[data-service="send_text"] .hdot:is(.green, .red)').length > 0; })()`)
      .catch(async (e) => { throw new Error(e.message + ': ' + await ev(`JSON.stringify(state.history).slice(0, 1500)`)); });
    if (process.env.UPDATE_SCREENSHOT) {
      await sleep(1500);
      await ev(`document.getElementById('toast').hidden = true; true`);
      await page('Emulation.setDeviceMetricsOverride', { width: 1440, height: 900, deviceScaleFactor: 1, mobile: false });
      await sleep(300);
      const wide = await page('Page.getLayoutMetrics');
      const big = await page('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true,
        clip: { x: 0, y: 0, width: 1440, height: Math.min(2600, Math.ceil(wide.cssContentSize.height)), scale: 1 } });
      fs.writeFileSync(path.join(repo, 'docs/screenshot-1440.png'), Buffer.from(big.data, 'base64'));
      await page('Emulation.clearDeviceMetricsOverride');
      await ev(`document.getElementById('toast').hidden = true; true`);
      const { cssContentSize } = await page('Page.getLayoutMetrics');
      const shot = await page('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true,
        clip: { x: 0, y: 0, width: 1280, height: Math.min(2600, Math.ceil(cssContentSize.height)), scale: 1 } });
      fs.writeFileSync(path.join(repo, 'docs/screenshot.png'), Buffer.from(shot.data, 'base64'));
    }
    await page('Emulation.setDeviceMetricsOverride', { width: 390, height: 844, deviceScaleFactor: 2, mobile: true });
    await sleep(300);
    if (process.env.PHONE_SCREENSHOT) {
      const shot = await page('Page.captureScreenshot', { format: 'png' });
      fs.writeFileSync(process.env.PHONE_SCREENSHOT, Buffer.from(shot.data, 'base64'));
    }
    const overflow = await ev(`document.documentElement.scrollWidth - window.innerWidth`);
    if (overflow > 2) throw new Error('the page is wider than a phone by ' + overflow + ' px');
    // No word is split across lines: every cell or card value without a space renders as one line.
    const split = await ev(`(() => {
      const out = [];
      for (const cell of document.querySelectorAll('td, .card dd, .card dt, .strip-name')) {
        for (const node of cell.childNodes) {
          if (node.nodeType !== 3 || !node.textContent.trim() || /\\s/.test(node.textContent.trim())) continue;
          const r = document.createRange(); r.selectNodeContents(node);
          if (r.getClientRects().length > 1) out.push(node.textContent);
        }
      }
      return out.slice(0, 5).join(' | ');
    })()`);
    if (split) throw new Error('words split across lines at 390 px: ' + split);
    // The health strip on a phone: a time axis, dots wide enough to tap, and a tap shows the tip.
    await ev(`loadHistory().then(() => true)`);
    const strip = await ev(`(() => {
      const dot = document.querySelector('.strip[data-service="send_text"] .hdot:last-child');
      dot.dispatchEvent(new PointerEvent('pointerdown', { bubbles: true }));
      return JSON.stringify({ width: dot.getBoundingClientRect().width, n: dot.parentNode.children.length, sw: dot.parentNode.getBoundingClientRect().width, hw: document.getElementById('history').clientWidth, axis: document.querySelectorAll('#history .axis span').length,
        tip: document.getElementById('history-tip').hidden ? '' : document.getElementById('history-tip').textContent });
    })()`);
    const { width, axis, tip } = JSON.parse(strip);
    if (width < 5 || axis !== 3 || !tip.includes('send_text')) throw new Error('health strip on a phone: ' + strip);
    if (process.env.UPDATE_SCREENSHOT) {
      const { cssContentSize } = await page('Page.getLayoutMetrics');
      const shot = await page('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true,
        clip: { x: 0, y: 0, width: 390, height: Math.min(3000, Math.ceil(cssContentSize.height)), scale: 1 } });
      fs.writeFileSync(path.join(repo, 'docs/screenshot-390.png'), Buffer.from(shot.data, 'base64'));
    }
    await page('Emulation.clearDeviceMetricsOverride');
  });

  await step('start a flood recovery and see its countdown', async () => {
    await ev(`document.querySelector('button.flood[data-group="telegram"]').click(); true`);
    await waitJs('the confirmation', `document.getElementById('confirm').open`);
    await ev(`document.getElementById('confirm-ok').click(); true`);
    await waitJs('the recovery countdown', `(() => {
      const b = document.getElementById('recovery-telegram');
      return b && b.querySelector('.stage').textContent === 'cooldown' && /\\d+m? ?\\d*s left/.test(b.querySelector('.countdown')?.textContent || '');
    })()`, 30000);
    const first = await ev(`document.querySelector('#recovery-telegram .countdown').textContent`);
    await sleep(2200);
    const later = await ev(`document.querySelector('#recovery-telegram .countdown').textContent`);
    if (first === later) throw new Error('the countdown does not move: ' + first);
    await ev(`document.querySelector('#recovery-telegram .cancel-recovery').click(); true`);
    await waitJs('the confirmation', `document.getElementById('confirm').open`);
    await ev(`document.getElementById('confirm-ok').click(); true`);
    await waitJs('the recovery cancelled', `document.querySelector('#recovery-telegram .stage')?.textContent === 'cancelled'`);
    const words = await ev(`[...document.querySelectorAll('.card .message, .banner')].map(m => m.textContent).join(' | ')`);
    if (/--force|refused: refused|`tend start/.test(words)) throw new Error('CLI wording on the page: ' + words);
  });

  if (b.errors.length) throw new Error('page errors: ' + b.errors.join('; '));
  b.close();
  console.log(`browser tests: ${results.length} passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().then(() => { cleanup(); process.exit(0); }, (e) => {
  console.error(e.stack || e);
  for (const d of dirs) {
    const f = path.join(d, 'tend.stderr');
    if (fs.existsSync(f)) console.error('--- tend stderr (tail)\n' + fs.readFileSync(f, 'utf8').split('\n').slice(-30).join('\n'));
  }
  cleanup();
  process.exit(1);
});
