// tend status page. Plain JS, no build step, no external requests.
// Everything that comes from the server is inserted with textContent / attributes, never as HTML:
// log lines and chat ids are attacker-controlled.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  csrf: '',
  me: null,
  view: null,
  clockOffset: 0, // server ms - local ms
  events: null,
  logCursor: null,
  logLines: [],
  logLive: null,
  optionsFilled: false,
  timers: [],
};

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function human(ms) {
  if (ms === null || ms === undefined) return '—';
  ms = Math.max(0, ms);
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm ' + (s % 60) + 's';
  const h = Math.floor(m / 60);
  if (h < 48) return h + 'h ' + (m % 60) + 'm';
  return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
}

function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + units[i];
}

function when(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return d.toLocaleString();
}

function serverNow() { return Date.now() + state.clockOffset; }

function toast(text, bad) {
  const t = $('toast');
  t.textContent = text;
  t.className = bad ? 'bad' : '';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (method !== 'GET') {
    headers['X-CSRF-Token'] = state.csrf;
    headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  const type = res.headers.get('content-type') || '';
  if (type.includes('json')) data = await res.json().catch(() => null);
  if (res.status === 401 && path !== '/api/login') { showLogin(); }
  return { status: res.status, ok: res.ok, data };
}

// ---------- confirmation dialog ----------

function ask(title, text, okLabel, withReason) {
  return new Promise((resolve) => {
    const dlg = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel || 'OK';
    $('confirm-reason').value = '';
    $('confirm-reason-label').hidden = !withReason;
    const mine = ask.asked = (ask.asked || 0) + 1;
    const done = () => {
      // A close event is queued: the previous question's can arrive after this one opened. A newer
      // question supersedes this one (it was answered, by Cancel); our own close finds it shut.
      if (mine !== ask.asked) { dlg.removeEventListener('close', done); resolve(null); return; }
      if (dlg.open) return;
      dlg.removeEventListener('close', done);
      resolve(dlg.returnValue === 'ok' ? { reason: $('confirm-reason').value } : null);
    };
    dlg.returnValue = '';
    dlg.addEventListener('close', done);
    dlg.showModal();
  });
}

// ---------- login ----------

function showLogin(message) {
  stopLive();
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message || '';
  $('login-user').focus();
}

async function showApp(session) {
  state.csrf = session.csrf;
  state.me = session;
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('me').textContent = session.user + ' (' + session.role + ')';
  document.body.classList.toggle('viewer', session.role !== 'operator');
  startLive();
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('login-error').textContent = '';
  const r = await api('POST', '/api/login', { user: $('login-user').value, password: $('login-password').value });
  if (r.ok) { $('login-password').value = ''; showApp(r.data); }
  else $('login-error').textContent = (r.data && r.data.error) || ('login failed (' + r.status + ')');
});

$('logout').addEventListener('click', async () => {
  await api('POST', '/api/logout');
  showLogin('Logged out.');
});

// ---------- live status ----------

function startLive() {
  stopLive();
  const es = new EventSource('/api/events');
  state.events = es;
  es.addEventListener('status', (ev) => {
    $('live').classList.add('on');
    const view = JSON.parse(ev.data);
    // at_ms is the server's clock when it built this view (not the snapshot's time), so the offset
    // stays right between views and tick() moves every clock each second.
    state.clockOffset = view.at_ms - Date.now();
    render(view);
  });
  es.addEventListener('event', (ev) => {
    const e = JSON.parse(ev.data);
    if (e.event === 'alert') toast((e.raised ? 'Alert: ' : 'Cleared: ') + e.service + ' ' + e.check + ' — ' + e.message, e.raised);
    if (e.event === 'recovery') loadAudit();
  });
  es.onerror = async () => {
    $('live').classList.remove('on');
    const r = await api('GET', '/api/session');
    if (r.status === 401) stopLive();
  };
  loadHistory(); loadChats(); loadAudit(); loadLogs(true);
  state.timers.push(setInterval(loadHistory, 60000));
  state.timers.push(setInterval(loadChats, 30000));
  state.timers.push(setInterval(loadAudit, 30000));
  state.timers.push(setInterval(() => { if ($('log-auto').checked && !$('log-live').checked) loadLogs(true); }, 30000));
  state.timers.push(setInterval(tick, 1000));
}

function stopLive() {
  if (state.events) { state.events.close(); state.events = null; }
  if (state.logLive) { state.logLive.close(); state.logLive = null; }
  state.timers.forEach(clearInterval);
  state.timers = [];
}

function render(view) {
  state.view = view;
  if (view.me) { state.me = Object.assign(state.me || {}, view.me); }
  fillOptions(view);
  renderBanners(view);
  renderGroups(view);
  renderCards(view);
  renderSchedules(view);
  renderTitle(view);
}

// The title and favicon name what needs a look: "2 attention · zombie send_text · tend".
function renderTitle(view) {
  const bad = view.services.filter((s) => s.condition && s.condition.attention);
  const words = bad.map((s) => s.condition.name.replace('_', ' ') + ' ' + s.name);
  document.title = (bad.length ? '⚠ ' + words.join(', ') + ' · ' : '') + 'tend — status';
  const color = bad.some((s) => s.color === 'red' || s.condition.name === 'zombie' || s.condition.name === 'fatal') ? '#d1423a'
    : bad.length ? '#d99a14' : '#2f9e55';
  let icon = document.querySelector('link[rel=icon]');
  if (!icon) { icon = el('link', { rel: 'icon' }); document.head.append(icon); }
  const href = 'data:image/svg+xml,' + encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="' + color + '"/></svg>');
  if (icon.getAttribute('href') !== href) icon.setAttribute('href', href);
  document.body.dataset.attention = String(bad.length);
}

// The two flood types people look for under one word: which is which.
const TYPE_HINT = {
  FloodWait: 'raised: longer than Telethon sleeps (an error)',
  FloodSleep: 'a flood wait Telethon slept through (a warning)',
};

function fillOptions(view) {
  if (state.optionsFilled) return;
  state.optionsFilled = true;
  const svc = $('log-service');
  for (const s of view.services) svc.append(el('option', { value: s.name, text: s.name }));
  const types = $('log-type');
  for (const t of view.error_types) types.append(el('option', { value: t, text: t + (TYPE_HINT[t] ? ' — ' + TYPE_HINT[t] : '') }));
}

function renderBanners(view) {
  const box = $('banners');
  box.replaceChildren();
  if (view.config_error) {
    box.append(el('div', { class: 'banner red', id: 'config-error' },
      el('strong', { text: 'Configuration error: the last edit was not applied (the running configuration is unchanged)' }),
      el('pre', { text: view.config_error })));
  }
  if (view.state_warning) {
    box.append(el('div', { class: 'banner amber', id: 'state-warning' }, el('strong', { text: 'State file: ' }), view.state_warning));
  }
  for (const n of view.web_notices || []) {
    box.append(el('div', { class: 'banner amber', 'data-web-notice': '' }, el('strong', { text: 'Status page: ' }), n));
  }
  for (const a of view.alerts) {
    box.append(el('div', { class: 'banner red', 'data-alert': a.service },
      el('strong', { text: a.service + ': ' + a.check + ' failed ' + a.failures + ' times in a row' }),
      ' — ' + a.message));
  }
  for (const a of historyAlerts()) {
    if (view.alerts.some((x) => x.service === a)) continue;
    box.append(el('div', { class: 'banner red', 'data-alert': a },
      el('strong', { text: a + ': 3 or more failed health checks in a row' })));
  }
  for (const r of view.recoveries) {
    const stage = r.recovery.stage.stage;
    const finished = stage === 'done' || stage === 'cancelled';
    // A finished recovery is news for a minute, then it is gone (tick() removes it).
    const endedAt = finished ? r.recovery.stage.at_ms : null;
    if (finished && serverNow() - endedAt > FINISHED_BANNER_MS) continue;
    const service = currentRecoveryService(r);
    const b = el('div', { class: 'banner ' + (finished ? 'grey' : 'amber'), id: 'recovery-' + r.recovery.group,
      'data-expires': finished ? endedAt + FINISHED_BANNER_MS : null },
      el('strong', { text: 'Flood-wait recovery of ' + r.recovery.group }),
      ' · stage ', el('span', { class: 'stage', text: stage }),
      service ? ' · ' + service : '',
      r.until_ms && !finished ? el('span', { class: 'countdown', 'data-until': r.until_ms, 'data-prefix': ' · ', text: ' · ' + human(r.until_ms - serverNow()) + ' left' }) : '',
      el('div', { class: 'summary', text: r.summary }));
    if (!finished && state.me && state.me.role === 'operator') {
      b.append(el('button', { class: 'cancel-recovery', onclick: () => groupAction(r.recovery.group, 'cancel_recovery') }, 'Cancel recovery'));
    }
    box.append(b);
  }
}

function currentRecoveryService(r) {
  const st = r.recovery.stage;
  if (st.stage === 'starting') return r.recovery.members[st.index];
  if (st.stage === 'pause') return 'next: ' + r.recovery.members[st.next];
  return '';
}

const FINISHED_BANNER_MS = 60000;

// Every second, between views: countdowns, uptimes and "next start in" move on the server's clock.
function tick() {
  const now = serverNow();
  for (const c of document.querySelectorAll('.countdown')) {
    c.textContent = (c.dataset.prefix || '') + human(Number(c.dataset.until) - now) + ' left';
  }
  for (const c of document.querySelectorAll('.next-in')) {
    c.textContent = 'in ' + human(Number(c.dataset.at) - now);
  }
  for (const c of document.querySelectorAll('.uptime')) {
    c.textContent = human(now - Number(c.dataset.since));
  }
  for (const c of document.querySelectorAll('.ago')) {
    c.textContent = human(now - Number(c.dataset.at)) + ' ago';
  }
  for (const b of document.querySelectorAll('[data-expires]')) {
    if (now > Number(b.dataset.expires)) b.remove();
  }
}

function renderGroups(view) {
  const box = $('group-actions');
  box.replaceChildren();
  for (const g of view.groups) {
    box.append(el('button', { class: 'flood', 'data-group': g, onclick: () => clearFlood(g) }, 'Clear Flood Wait (' + g + ')'));
  }
  const accounts = $('accounts');
  accounts.replaceChildren();
  for (const a of view.accounts || []) {
    accounts.append(el('li', { 'data-account': a.group }, el('strong', { text: a.group + ': ' }), a.summary));
  }
  accounts.hidden = !(view.accounts || []).length;
}

function renderCards(view) {
  const box = $('cards');
  const keep = new Set();
  for (const s of view.services) {
    keep.add(s.name);
    let card = box.querySelector('[data-service="' + CSS.escape(s.name) + '"]');
    const fresh = card ? null : el('article', { class: 'card', 'data-service': s.name });
    card = card || fresh;
    // Keep what the reader opened or closed: a re-render every few seconds must not undo it.
    const open = {};
    for (const d of card.querySelectorAll('details')) open[d.className] = d.open;
    card.replaceChildren(...cardContent(s));
    for (const d of card.querySelectorAll('details')) if (d.className in open) d.open = open[d.className];
    card.dataset.state = s.state;
    card.dataset.color = s.color;
    if (fresh) box.append(fresh);
  }
  for (const c of [...box.children]) if (!keep.has(c.dataset.service)) c.remove();
}

const ALIVE = ['starting', 'running', 'stopping'];

function clock(cls, data, text) { return el('span', Object.assign({ class: cls, text }, data)); }

function cardContent(s) {
  const alive = ALIVE.includes(s.state);
  const now = serverNow();
  let next = 'allowed now';
  if (s.next_start_hold) {
    next = el('span', {}, s.next_start_hold + ' ',
      clock('next-in', { 'data-at': s.next_start.at_ms }, 'in ' + human(s.next_start.at_ms - now)));
  }
  let uptime = '—';
  if (s.uptime_ms !== null && s.since_ms) uptime = clock('uptime', { 'data-since': s.since_ms }, human(now - s.since_ms));
  else if (s.last_exit) {
    uptime = el('span', { class: 'muted' }, 'down · last run ' + human(s.last_exit.ran_ms) + ', ended ',
      clock('ago', { 'data-at': s.last_exit.at_ms }, human(now - s.last_exit.at_ms) + ' ago'));
  }
  const rows = [
    ['state', el('span', { class: 'condition cond-' + s.condition.name, text: s.condition.text + (s.sticky_stop ? ' (stopped by hand)' : '') })],
    ['pid', s.pid ?? '—'],
    ['uptime', uptime],
    ['memory', s.usage ? bytes(s.usage.rss_bytes) : '—'],
    ['CPU', s.usage && s.usage.cpu_percent !== null ? s.usage.cpu_percent.toFixed(1) + ' %' : '—'],
    ['cache', s.cache_size !== null && s.cache_size !== undefined ? Math.round(s.cache_size).toLocaleString() + ' entities' : '—'],
    // Warnings counted too: "errors only" in the log viewer lists both severities.
    // "since start" is of the run that ended when there is no process: say so.
    ['errors', s.errors_since_start + (alive ? ' since start' : ' in the last run') + ' · ' + s.errors_total + ' since tend started'],
    ['warnings', s.error_types.filter((t) => t.severity === 'warning').reduce((n, t) => n + t.since_start, 0) + (alive ? ' since start' : ' in the last run')],
    ['restarts', s.restarts + ' (' + s.starts_24h + ' starts in 24 h)'],
    ['next start', next],
  ];
  if (s.flood_until_ms && s.flood_until_ms > serverNow()) {
    rows.push(['flood wait', el('span', { class: 'countdown', 'data-until': s.flood_until_ms, text: human(s.flood_until_ms - serverNow()) + ' left' })]);
  }
  if (s.last_start_text) rows.push(['last start', s.last_start_text]);
  const dl = el('dl');
  for (const [k, v] of rows) dl.append(el('dt', { text: k }), el('dd', {}, v));
  const types = el('ul', { class: 'types' });
  for (const t of s.error_types.slice(0, 8)) {
    types.append(el('li', { class: 'sev-' + t.severity }, el('span', { text: t.name }), el('span', { class: 'n', text: String(t.since_start) })));
  }
  const checkList = (list) => {
    const ul = el('ul', { class: 'checks' });
    for (const c of list) {
      ul.append(el('li', { class: 'st-' + c.status, title: new Date(c.at_ms).toLocaleString() },
        el('span', { text: c.check }), ' ', el('span', { class: 'msg', text: c.message })));
    }
    return ul;
  };
  const last = s.last_run;
  let lastRun = null;
  if (last) {
    // The dead run's checks: greyed, under a title that says when that run ended.
    const ended = last.ended_ms ? 'ended ' + when(last.ended_ms) : 'before this tend started';
    lastRun = el('details', { class: 'lastrun' }, el('summary', { text: 'last run (' + ended + ')' }),
      last.cache_size !== null && last.cache_size !== undefined ? el('p', { class: 'muted', text: 'cache ' + Math.round(last.cache_size).toLocaleString() + ' entities' }) : null,
      checkList(last.checks));
  }
  const op = state.me && state.me.role === 'operator';
  // Disabled where the action makes no sense: Start on a live process, Stop on a stopped one,
  // Reload Cache without a running process.
  const down = ['stopped', 'exited', 'fatal'].includes(s.state);
  const why = (ok, text) => (ok ? null : text);
  const button = (cls, action, label, ok, no) => el('button', {
    class: cls, disabled: !op || !ok, title: op ? why(ok, no) : 'operators only',
    onclick: () => serviceAction(s.name, action, s),
  }, label);
  const buttons = el('div', { class: 'buttons' },
    button('start', 'start', 'Start', !alive, 'it runs already'),
    button('stop danger', 'stop', 'Stop', !down, 'it is stopped already'),
    button('restart', 'restart', 'Restart', s.state === 'running' || s.state === 'starting', 'not running: use Start'),
    button('reload', 'reload_cache', 'Reload Cache', s.state === 'running', 'not running'));
  return [
    el('h2', {}, el('span', { class: 'dot ' + s.color, title: s.state }), s.name,
      s.port ? el('span', { class: 'port muted', text: ':' + s.port }) : null),
    s.message ? el('p', { class: 'message', text: s.message }) : null,
    s.log_loss ? el('p', { class: 'message log-loss', text: 'Logs not written since ' + when(Date.parse(s.log_loss.since)) + ': ' +
      s.log_loss.error + ' · ' + s.log_loss.lines_lost + ' lines lost, ' + s.log_loss.lines_waiting + ' waiting in memory' }) : null,
    dl,
    s.error_types.length ? el('details', { class: 'breakdown' }, el('summary', { text: 'errors by type' }), types) : null,
    s.checks.length ? el('details', { class: 'lastchecks', open: true }, el('summary', { text: 'last checks' }), checkList(s.checks)) : null,
    lastRun,
    buttons,
  ].filter(Boolean);
}

// ---------- schedules ----------

function renderSchedules(view) {
  const list = view.schedules || [];
  const body = $('schedules').querySelector('tbody');
  body.replaceChildren();
  for (const s of list) {
    const last = s.runs[0];
    let next;
    if (!s.enabled) next = el('span', { class: 'muted', text: 'disabled' });
    else if (s.next_ms === null || s.next_ms === undefined) next = el('span', { class: 'muted', text: 'never' });
    else next = el('span', { title: new Date(s.next_ms).toISOString() },
      when(s.next_ms), ' ', el('span', { class: 'next-in muted', 'data-at': s.next_ms, text: 'in ' + human(s.next_ms - serverNow()) }));
    let outcome;
    if (s.running_since_ms) outcome = el('span', { class: 'run running', text: 'running' });
    else if (last) outcome = el('span', {}, el('span', { class: 'run ' + last.status, text: last.status }), ' ', el('span', { class: 'msg', text: last.message }));
    else outcome = el('span', { class: 'muted', text: 'not run yet' });
    const on = s.services.length ? s.services.join(', ') : (s.detail || '—');
    body.append(el('tr', { 'data-schedule': s.name },
      el('td', { text: s.name }), el('td', { class: 'mono', text: s.cron }), el('td', { text: s.action }),
      el('td', { class: s.services.length ? '' : 'mono', text: on }), el('td', {}, next),
      el('td', { text: last ? when(last.at_ms) : '—' }), el('td', {}, outcome)));
  }
  $('schedules-empty').hidden = list.length > 0;
  $('schedules').hidden = list.length === 0;
}

// ---------- actions ----------

const LABEL = { start: 'Start', stop: 'Stop', restart: 'Restart', reload_cache: 'Reload Cache' };

async function serviceAction(name, action, s) {
  let reason = '';
  if (action === 'stop') {
    const ok = await ask('Stop ' + name + '?', 'It stays stopped until someone starts it. Every later start fetches all dialogs again.', 'Stop', true);
    if (!ok) return;
    reason = ok.reason;
  }
  if (action === 'restart') {
    const cache = s && s.cache_size ? ' (' + Math.round(s.cache_size).toLocaleString() + ' entities now)' : '';
    const ok = await ask('Restart ' + name + '?', 'A restart costs a full dialog fetch' + cache +
      ' on the shared Telegram account and counts against the group\'s start budget; too many earn a flood wait for every service of the account. To reload the cache only, use Reload Cache.', 'Restart', true);
    if (!ok) return;
    reason = ok.reason;
  }
  let r = await api('POST', '/api/services/' + encodeURIComponent(name) + '/' + action, { reason });
  if (r.status === 409 && r.data && r.data.outcome === 'refused') {
    const first = await ask(LABEL[action] + ' refused', r.data.message.replace(/^refused: /, '') + '. Starting more often can earn a flood wait for the whole account.', 'Force ' + LABEL[action].toLowerCase() + '…', true);
    if (!first) return;
    const second = await ask('Really force?', 'This bypasses the restart spacing for ' + name + '. Are you sure?', 'Yes, force it', false);
    if (!second) return;
    r = await api('POST', '/api/services/' + encodeURIComponent(name) + '/' + action, { force: true, reason: first.reason || reason });
  }
  report(r, LABEL[action] + ' ' + name);
  loadAudit();
}

async function clearFlood(group) {
  const ok = await ask('Clear Flood Wait (' + group + ')?', 'Stops every service of the group, waits out the flood wait, then starts them one at a time, each after the previous one is ready.', 'Start recovery', true);
  if (!ok) return;
  report(await api('POST', '/api/groups/' + encodeURIComponent(group) + '/recover', { reason: ok.reason }), 'Recovery of ' + group);
  loadAudit();
}

async function groupAction(group, action) {
  if (action === 'cancel_recovery') {
    const ok = await ask('Cancel the recovery of ' + group + '?', 'Services are left as they are now.', 'Cancel recovery', true);
    if (!ok) return;
    report(await api('POST', '/api/groups/' + encodeURIComponent(group) + '/' + action, { reason: ok.reason }), 'Cancel recovery');
  }
  loadAudit();
}

function report(r, what) {
  if (r.ok) toast(what + ': ' + ((r.data && r.data.message) || 'done'));
  else toast(what + ': ' + ((r.data && (r.data.message || r.data.error)) || ('HTTP ' + r.status)), true);
}

// ---------- diagnostics ----------

$('diagnose-button').addEventListener('click', async () => {
  $('diagnose-text').textContent = 'running…';
  $('diagnose').showModal();
  const r = await api('GET', '/api/diagnose');
  $('diagnose-text').textContent = r.ok ? r.data.text : ((r.data && r.data.error) || 'failed');
});
$('diagnose-copy').addEventListener('click', () => copy($('diagnose-text').textContent));

async function copy(text) {
  try { await navigator.clipboard.writeText(text); toast('Copied ' + text.split('\n').length + ' lines'); }
  catch (_) {
    const area = el('textarea', {}, text);
    document.body.append(area); area.select();
    document.execCommand('copy'); area.remove();
    toast('Copied');
  }
}

// ---------- health history ----------

state.history = null;

async function loadHistory() {
  const r = await api('GET', '/api/history?minutes=120');
  if (!r.ok) return;
  state.history = r.data;
  renderHistory(r.data);
  if (state.view) renderBanners(state.view);
}

// 3+ failed results in a row at the end of a strip.
function historyAlerts() {
  const out = [];
  if (!state.history) return out;
  for (const s of state.history.strips) {
    const last = s.points.slice(-3);
    if (last.length === 3 && last.every((p) => p[1] !== 'ok')) out.push(s.service);
  }
  return out;
}

function renderHistory(h) {
  const box = $('history');
  box.replaceChildren();
  // Fewer, wider dots on a phone (3-minute buckets), so each can be tapped.
  const slots = $('history').clientWidth < 560 ? 40 : 120;
  const span = h.now_ms - h.since_ms;
  const showTip = (service, e) => {
    const t = e.target.dataset && e.target.dataset.at;
    if (!t) return;
    const tip = $('history-tip');
    tip.hidden = false;
    const cls = e.target.classList.contains('red') ? 'no answer' : e.target.classList.contains('green') ? 'answered' : 'no data';
    tip.textContent = service + ' · ' + new Date(Number(t)).toLocaleTimeString() + ' · ' + cls;
  };
  for (const s of h.strips) {
    const buckets = new Array(slots).fill(null);
    for (const [at, status] of s.points) {
      const i = Math.min(slots - 1, Math.floor((at - h.since_ms) / span * slots));
      if (i < 0) continue;
      const bad = status !== 'ok';
      buckets[i] = buckets[i] === 'red' || bad ? 'red' : 'green';
    }
    const strip = el('div', { class: 'strip', 'data-service': s.service });
    strip.style.gridTemplateColumns = 'repeat(' + slots + ', 1fr)'; // CSSOM: the CSP forbids style attributes
    buckets.forEach((b, i) => {
      const from = h.since_ms + i * span / slots;
      strip.append(el('span', { class: 'hdot ' + (b || 'grey'), 'data-at': Math.round(from) }));
    });
    // pointermove for a mouse, pointerdown for a tap.
    strip.addEventListener('pointermove', (e) => showTip(s.service, e));
    strip.addEventListener('pointerdown', (e) => showTip(s.service, e));
    box.append(el('div', { class: 'strip-row' }, el('span', { class: 'strip-name', text: s.service + (s.check ? ' (' + s.check + ')' : '') }), strip));
  }
  if (h.strips.length) {
    // The time axis: the strip's start, middle and end as clock times.
    const at = (f) => new Date(h.since_ms + f * span).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    box.append(el('div', { class: 'strip-row' }, el('span'),
      el('div', { class: 'axis' }, el('span', { text: at(0) }), el('span', { text: at(0.5) }), el('span', { text: at(1) + ' (now)' }))));
  }
}

// ---------- failing chats ----------

async function loadChats() {
  const r = await api('GET', '/api/chats');
  if (!r.ok) return;
  const body = $('chats').querySelector('tbody');
  body.replaceChildren();
  for (const row of r.data.rows) {
    body.append(el('tr', {}, el('td', { class: 'mono', text: row.chat_id }), el('td', { text: row.service }),
      el('td', { text: row.pattern }), el('td', { class: 'n', text: String(row.count) }),
      el('td', { text: when(row.first_seen_ms) }), el('td', { text: when(row.last_seen_ms) })));
  }
  $('chats-empty').hidden = r.data.rows.length > 0;
  $('chats').hidden = r.data.rows.length === 0;
  $('chats-advice').textContent = r.data.rows.length ? r.data.advice : '';
  $('chats-advice').hidden = !(r.data.rows.length && r.data.advice);
}

// ---------- audit ----------

async function loadAudit() {
  const r = await api('GET', '/api/audit');
  if (!r.ok) return;
  const body = $('audit').querySelector('tbody');
  body.replaceChildren();
  for (const a of r.data.slice(0, 100)) {
    body.append(el('tr', {}, el('td', { text: new Date(a.at).toLocaleString() }), el('td', { text: a.user }),
      el('td', { text: a.ip }), el('td', { text: a.action }), el('td', { text: a.target }),
      el('td', { text: a.reason }), el('td', { text: a.outcome })));
  }
}

// ---------- logs ----------

function logParams() {
  const p = new URLSearchParams();
  p.set('service', $('log-service').value);
  if ($('log-kind').value === 'errors') p.set('errors', '1');
  if ($('log-type').value) p.set('type', $('log-type').value);
  if ($('log-q').value) p.set('q', $('log-q').value);
  const iso = (v) => (v ? new Date(v).toISOString() : '');
  if ($('log-from').value) p.set('from', iso($('log-from').value));
  if ($('log-to').value) p.set('to', iso($('log-to').value));
  return p;
}

function lineNode(l) {
  return el('div', { class: 'line' + (l.error ? ' err' : '') + ' s-' + l.stream },
    el('span', { class: 'ts', text: new Date(l.ts).toLocaleString() + ' ' }),
    el('span', { class: 'svc', text: l.service + ' ' }),
    l.kind ? el('span', { class: 'kind', text: '[' + l.kind + '] ' }) : null,
    el('span', { class: 'text', text: l.text }));
}

function lineText(l) { return l.service + ' ' + l.ts + ' ' + l.stream + ' ' + l.text; }

async function loadLogs(reset) {
  const p = logParams();
  if (!reset && state.logCursor) p.set('cursor', state.logCursor);
  p.set('limit', '200');
  $('log-status').textContent = 'searching…';
  const r = await api('GET', '/api/logs?' + p.toString());
  if (!r.ok) { $('log-status').textContent = (r.data && r.data.error) || 'failed'; return; }
  if (reset) { state.logLines = []; $('log-lines').replaceChildren(); }
  state.logLines.push(...r.data.lines);
  const frag = document.createDocumentFragment();
  for (const l of r.data.lines) frag.append(lineNode(l));
  $('log-lines').append(frag);
  state.logCursor = r.data.cursor;
  $('log-more').hidden = !r.data.cursor;
  $('log-status').textContent = state.logLines.length + ' lines, newest first' + (r.data.cursor ? '' : ' (all)');
}

$('log-filters').addEventListener('submit', (e) => { e.preventDefault(); loadLogs(true); if ($('log-live').checked) startTail(); });
for (const id of ['log-service', 'log-kind', 'log-type']) $(id).addEventListener('change', () => { loadLogs(true); if ($('log-live').checked) startTail(); });
$('log-more').addEventListener('click', () => loadLogs(false));
$('log-copy').addEventListener('click', () => copy(state.logLines.map(lineText).join('\n')));
$('log-download').addEventListener('click', () => {
  const a = el('a', { href: '/api/logs/download?' + logParams().toString(), download: 'tend-logs.txt' });
  document.body.append(a); a.click(); a.remove();
});
$('log-live').addEventListener('change', () => { if ($('log-live').checked) startTail(); else stopTail(); });

function startTail() {
  stopTail();
  const es = new EventSource('/api/logs/live?' + logParams().toString());
  state.logLive = es;
  es.addEventListener('line', (ev) => {
    const l = JSON.parse(ev.data);
    state.logLines.unshift(l);
    $('log-lines').prepend(lineNode(l));
  });
}

function stopTail() { if (state.logLive) { state.logLive.close(); state.logLive = null; } }

// ---------- start ----------

(async () => {
  const r = await api('GET', '/api/session');
  if (r.ok) showApp(r.data); else showLogin();
})();
