// The Nagare web console: a small single-page app over the broker's /api/ (no framework,
// no build step). Pages: overview, topics, topic detail with the message browser, groups,
// group detail, ACLs, transactions and transaction detail. Charts are drawn by hand on a canvas from values polled every 2 s.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $('#main');
let timers = [];
let session = null;

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}
function fmtBytes(n) {
  if (n == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : v) + ' ' + u[i];
}
function banner(msg, info) {
  const b = $('#banner');
  if (!msg) { b.hidden = true; return; }
  b.textContent = msg; b.className = info ? 'info' : ''; b.hidden = false;
}

// A message for the page a navigation leads to (route() clears the banner first).
let flashMsg = null;
function flash(msg) { flashMsg = msg; }

class HttpError extends Error {
  constructor(status, body) { super(body && body.error ? body.error : 'HTTP ' + status); this.status = status; this.body = body; }
}

async function api(method, path, body) {
  const opts = {method, headers: {}, credentials: 'same-origin'};
  if (method !== 'GET') opts.headers['X-Nagare-Console'] = '1';
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  // A hung request must not stall every later page (renders run one at a time).
  opts.signal = AbortSignal.timeout(30000);
  const r = await fetch('/api/' + path, opts);
  let j = null;
  try { j = await r.json(); } catch (_) { j = null; }
  if (r.status === 401 && path !== 'login') { showLogin(); throw new HttpError(401, j); }
  if (!r.ok) throw new HttpError(r.status, j);
  return j;
}

// ---- charts ----------------------------------------------------------------------------
class Chart {
  constructor(canvas, series, unit) { this.canvas = canvas; this.series = series; this.unit = unit; this.points = series.map(() => []); this.max = 45; this.draw(); }
  push(values) {
    values.forEach((v, i) => { this.points[i].push(v); if (this.points[i].length > this.max) this.points[i].shift(); });
    this.draw();
  }
  draw() {
    const c = this.canvas; const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth; const h = c.clientHeight;
    c.width = w * dpr; c.height = h * dpr;
    const g = c.getContext('2d'); g.scale(dpr, dpr); g.clearRect(0, 0, w, h);
    const all = this.points.flat().filter(v => v != null);
    const top = Math.max(1, ...all) * 1.15;
    const left = 64; const bottom = h - 18;
    g.strokeStyle = '#dde1e8'; g.fillStyle = '#6b7385'; g.font = '11px system-ui'; g.lineWidth = 1;
    for (let k = 0; k <= 4; k++) {
      const y = bottom - (bottom - 8) * k / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(w - 8, y); g.stroke();
      g.fillText(this.unit(top * k / 4), 4, y + 4);
    }
    g.fillText('last ' + (this.max * 2) + ' s', w - 70, h - 4);
    this.points.forEach((pts, i) => {
      g.strokeStyle = this.series[i].color; g.lineWidth = 2; g.beginPath();
      pts.forEach((v, j) => {
        const x = left + (w - 8 - left) * (j + this.max - pts.length) / (this.max - 1);
        const y = bottom - (bottom - 8) * (v ?? 0) / top;
        if (j === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    });
  }
  legend() { return '<div class="legend">' + this.series.map(s => `<span><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join('') + '</div>'; }
}

// Runs `f` now and every `ms` until the next navigation; a failed poll shows in the banner.
function every(ms, f) {
  // A poll still in flight when its page is left fails on the next page's DOM: not news.
  let id = null;
  const run = () => Promise.resolve().then(f).catch(err => { if (err.status !== 401 && timers.includes(id)) banner(err.message); });
  id = setInterval(run, ms); timers.push(id); run();
}

// ---- pages -----------------------------------------------------------------------------
async function overview() {
  const o = await api('GET', 'overview');
  const q = o.quorum || {};
  const quorum = q.error ? `<p class="muted">${esc(q.error)}</p>` : `
    <p>Leader <b>${esc(q.leader)}</b>, epoch ${esc(q.epoch)}, high watermark ${esc(q.high_watermark)}</p>
    <table><tr><th>Node</th><th>Role</th><th>Log end</th><th>Lag</th></tr>
    ${(q.voters || []).map(v => `<tr><td>${v.id}</td><td>voter${v.id === q.leader ? ' (leader)' : ''}</td><td class="num">${v.log_end_offset}</td><td class="num">${v.lag}</td></tr>`).join('')}
    ${(q.observers || []).map(v => `<tr><td>${v.id}</td><td>observer</td><td class="num">${v.log_end_offset}</td><td class="num">${v.lag}</td></tr>`).join('')}
    </table>`;
  main().innerHTML = `
    <h1>Cluster ${esc(o.cluster_id)}</h1>
    <div class="grid">
      <div class="card"><div class="muted">Brokers</div><div class="stat" id="stat-brokers">${o.brokers.length}</div></div>
      <div class="card"><div class="muted">Topics / partitions</div><div class="stat">${o.topics} / ${o.partitions}</div></div>
      <div class="card"><div class="muted">Under-replicated partitions</div><div class="stat ${o.under_replicated.length ? 'error' : 'ok'}" id="stat-urp">${o.under_replicated.length}</div></div>
      <div class="card"><div class="muted">Offline partitions</div><div class="stat ${o.offline_partitions ? 'error' : 'ok'}">${o.offline_partitions}</div></div>
    </div>
    <div class="card"><h2>Throughput (this broker)</h2><canvas class="chart" id="tp-chart"></canvas><div id="tp-legend"></div></div>
    <div class="grid">
      <div class="card"><h2>Brokers</h2><table id="brokers-table"><tr><th>Id</th><th>Endpoint</th><th>Rack</th><th>State</th></tr>
        ${o.brokers.map(b => `<tr><td>${b.id}${b.this ? ' <span class="badge">this</span>' : ''}</td><td>${esc(b.host)}:${b.port}</td><td>${esc(b.rack || '–')}</td><td>${b.fenced ? '<span class="badge bad">fenced</span>' : 'running'}</td></tr>`).join('')}
      </table></div>
      <div class="card"><h2>Controllers (KRaft quorum)</h2><p>Active controller: <b>${o.controller_id}</b></p>${quorum}</div>
      <div class="card"><h2>Versions</h2><p>Nagare ${esc(o.software_version)} (Kafka 4.x protocol)</p>
        <table>${Object.entries(o.finalized_features).map(([k, v]) => `<tr><td>${esc(k)}</td><td class="num">${v}</td></tr>`).join('')}</table>
        <p class="muted">Metadata offset ${o.metadata_offset}; acting as ${esc(o.principal)}</p></div>
    </div>
    <div class="card"><h2>Under-replicated partitions</h2>${o.under_replicated.length ? `<table><tr><th>Partition</th><th>Replicas</th><th>ISR</th></tr>${o.under_replicated.map(u => `<tr><td>${esc(u.topic)}-${u.partition}</td><td>${u.replicas.join(', ')}</td><td>${u.isr.join(', ')}</td></tr>`).join('')}</table>` : '<p class="ok">None.</p>'}</div>`;
  const chart = new Chart($('#tp-chart'), [{name: 'bytes in / s', color: '#2563eb'}, {name: 'bytes out / s', color: '#16a34a'}], v => fmtBytes(Math.round(v)));
  $('#tp-legend').innerHTML = chart.legend();
  let last = null;
  every(2000, async () => {
    const t = await api('GET', 'throughput');
    if (last) {
      const dt = Math.max(1, t.time_ms - last.time_ms) / 1000;
      chart.push([(t.bytes_in - last.bytes_in) / dt, (t.bytes_out - last.bytes_out) / dt]);
    }
    last = t;
  });
}

async function topics() {
  const t = await api('GET', 'topics');
  main().innerHTML = `
    <h1>Topics</h1>
    <div class="card"><h2>Create a topic</h2>
      <form class="inline" id="create-topic">
        <label>Name <input name="name" required></label>
        <label>Partitions <input name="partitions" type="number" min="1" value="3" style="width:90px"></label>
        <label>Replication factor <input name="replication_factor" type="number" min="-1" value="-1" style="width:90px"></label>
        <label>Configs (k=v, comma-separated) <input name="configs" placeholder="retention.ms=86400000"></label>
        <button type="submit">Create</button>
      </form></div>
    <div class="card"><table id="topics-table"><tr><th>Name</th><th>Partitions</th><th>Replication</th><th>Under-replicated</th></tr>
      ${t.topics.map(x => `<tr data-topic="${esc(x.name)}"><td><a href="#/topics/${encodeURIComponent(x.name)}">${esc(x.name)}</a>${x.internal ? ' <span class="badge">internal</span>' : ''}</td><td class="num">${x.partitions}</td><td class="num">${x.replication_factor}</td><td class="num ${x.under_replicated ? 'error' : ''}">${x.under_replicated}</td></tr>`).join('')}
    </table></div>`;
  $('#create-topic').addEventListener('submit', async e => {
    e.preventDefault();
    const f = new FormData(e.target); const configs = {};
    String(f.get('configs') || '').split(',').map(s => s.trim()).filter(Boolean).forEach(kv => { const i = kv.indexOf('='); if (i > 0) configs[kv.slice(0, i)] = kv.slice(i + 1); });
    try {
      const r = await api('POST', 'topics', {name: f.get('name'), partitions: Number(f.get('partitions')), replication_factor: Number(f.get('replication_factor')), configs});
      flash(`Created ${r.name} (${r.partitions} partitions)`);
      location.hash = '#/topics/' + encodeURIComponent(r.name);
    } catch (err) { banner(err.message); }
  });
}

function partitionRows(t) {
  return '<tr><th>Partition</th><th>Leader</th><th>Replicas</th><th>ISR</th><th>Start</th><th>End</th><th>Log size</th></tr>' +
    t.partitions.map(p => `<tr><td>${p.partition}</td><td>${p.leader}</td><td>${p.replicas.join(', ')}</td><td class="${p.isr.length < p.replicas.length ? 'error' : ''}">${p.isr.join(', ')}</td><td class="num">${p.start_offset ?? '–'}</td><td class="num">${p.end_offset ?? '–'}</td><td class="num">${fmtBytes(p.size)}</td></tr>`).join('');
}

async function topic(name) {
  const t = await api('GET', 'topics/' + encodeURIComponent(name));
  const enc = encodeURIComponent(name);
  main().innerHTML = `
    <h1>Topic ${esc(name)} <button class="danger" id="delete-topic" style="float:right">Delete topic</button></h1>
    <div class="card"><h2>Partitions</h2><table id="partitions-table">${partitionRows(t)}</table></div>
    <div class="card"><h2>Throughput (this broker)</h2><canvas class="chart" id="topic-chart"></canvas><div id="topic-legend"></div></div>
    <div class="card"><h2>Messages</h2>
      <form class="inline" id="browse-form">
        <label>From <select name="from"><option value="end">the end</option><option value="beginning">the beginning</option><option value="offset">offset</option><option value="timestamp">timestamp</option></select></label>
        <label>Offset <input name="offset" type="number" min="0" style="width:100px"></label>
        <label>Timestamp <input name="timestamp" type="datetime-local" step="1"></label>
        <label>Partition <select name="partition"><option value="">all</option>${t.partitions.map(p => `<option>${p.partition}</option>`).join('')}</select></label>
        <label>Limit <input name="limit" type="number" value="50" min="1" max="500" style="width:80px"></label>
        <label>Show as <select name="format"><option value="text">text</option><option value="json">JSON</option><option value="hex">hex</option></select></label>
        <button type="submit">Browse</button>
      </form>
      <table id="messages"><tr><th>Partition</th><th>Offset</th><th>Timestamp</th><th>Key</th><th>Value</th><th>Headers</th></tr></table>
    </div>
    <div class="card"><h2>Produce a test message</h2>
      <form class="inline" id="produce-form">
        <label>Partition <select name="partition">${t.partitions.map(p => `<option>${p.partition}</option>`).join('')}</select></label>
        <label>Key <input name="key"></label>
        <label>Value <textarea name="value" rows="2" cols="40"></textarea></label>
        <label>Header key <input name="hkey" style="width:110px"></label>
        <label>Header value <input name="hvalue" style="width:110px"></label>
        <button type="submit">Produce</button>
      </form></div>
    <div class="card"><h2>Configs</h2>
      <form class="inline" id="alter-config">
        <label>Name <input name="name" list="config-names" required></label>
        <label>Value <input name="value"></label>
        <button type="submit">Set</button>
        <button type="button" class="secondary" id="reset-config">Reset to default</button>
      </form>
      <datalist id="config-names">${t.configs.map(c => `<option>${esc(c.name)}</option>`).join('')}</datalist>
      <table id="configs-table"><tr><th>Name</th><th>Value</th><th>Source</th></tr>
      ${t.configs.map(c => `<tr data-config="${esc(c.name)}"><td>${esc(c.name)}</td><td>${c.sensitive ? '<i>hidden</i>' : esc(c.value ?? 'null')}</td><td><span class="badge${c.source === 'DYNAMIC_TOPIC_CONFIG' ? '' : ' muted'}">${esc(c.source)}</span></td></tr>`).join('')}
      </table></div>`;
  const browse = async () => {
    const f = new FormData($('#browse-form'));
    const q = new URLSearchParams({from: f.get('from'), limit: f.get('limit') || '50', format: f.get('format')});
    if (f.get('partition')) q.set('partition', f.get('partition'));
    if (f.get('from') === 'offset') q.set('offset', f.get('offset') || '0');
    if (f.get('from') === 'timestamp') q.set('timestamp', String(new Date(f.get('timestamp')).getTime()));
    try {
      const r = await api('GET', `topics/${enc}/messages?${q}`);
      const rows = r.records.map(m => `<tr class="msg"><td>${m.partition}</td><td class="num">${m.offset}</td><td>${new Date(m.timestamp).toISOString()}</td><td><pre class="val">${esc(m.key ?? 'null')}</pre></td><td><pre class="val">${esc(m.value ?? 'null')}</pre></td><td>${m.headers.map(h => `<pre class="val">${esc(h.key)}: ${esc(h.value ?? 'null')}</pre>`).join('')}</td></tr>`);
      $('#messages').innerHTML = '<tr><th>Partition</th><th>Offset</th><th>Timestamp</th><th>Key</th><th>Value</th><th>Headers</th></tr>' + (rows.join('') || '<tr><td colspan="6" class="muted">No messages.</td></tr>');
      if (r.elsewhere.length) banner('Not shown, led by other brokers (open the console there): ' + r.elsewhere.map(e => `partition ${e.partition} on broker ${e.leader}`).join(', '));
    } catch (err) { banner(err.message); }
  };
  $('#browse-form').addEventListener('submit', e => { e.preventDefault(); browse(); });
  const chart = new Chart($('#topic-chart'), [{name: 'messages in / s', color: '#7c3aed'}, {name: 'bytes in / s', color: '#2563eb'}, {name: 'bytes out / s', color: '#16a34a'}], v => v >= 1024 ? fmtBytes(Math.round(v)) : String(Math.round(v)));
  $('#topic-legend').innerHTML = chart.legend();
  let last = null;
  every(2000, async () => {
    const t = await api('GET', 'throughput');
    const now = t.topics.find(x => x.topic === name) || {bytes_in: 0, bytes_out: 0, messages_in: 0};
    if (last) {
      const dt = Math.max(1, t.time_ms - last.time) / 1000;
      chart.push([(now.messages_in - last.messages_in) / dt, (now.bytes_in - last.bytes_in) / dt, (now.bytes_out - last.bytes_out) / dt]);
    }
    last = {...now, time: t.time_ms};
  });
  $('#produce-form').addEventListener('submit', async e => {
    e.preventDefault();
    const f = new FormData(e.target);
    const body = {partition: Number(f.get('partition')), key: f.get('key') || null, value: f.get('value')};
    if (f.get('hkey')) body.headers = [{key: f.get('hkey'), value: f.get('hvalue')}];
    try { const r = await api('POST', `topics/${enc}/messages`, body); banner(`Produced to ${name}-${r.partition} at offset ${r.offset}`, true); browse();
      $('#partitions-table').innerHTML = partitionRows(await api('GET', 'topics/' + enc)); } catch (err) { banner(err.message); }
  });
  $('#alter-config').addEventListener('submit', async e => {
    e.preventDefault(); const f = new FormData(e.target);
    try { await api('PUT', `topics/${enc}/configs`, {set: {[f.get('name')]: f.get('value')}}); banner(`Set ${f.get('name')}`, true); route(); } catch (err) { banner(err.message); }
  });
  $('#reset-config').addEventListener('click', async () => {
    const n = new FormData($('#alter-config')).get('name');
    try { await api('PUT', `topics/${enc}/configs`, {delete: [n]}); banner(`Reset ${n}`, true); route(); } catch (err) { banner(err.message); }
  });
  $('#delete-topic').addEventListener('click', async () => {
    if (!confirm(`Delete topic ${name}?`)) return;
    try { await api('DELETE', 'topics/' + enc); flash(`Deleted ${name}`); location.hash = '#/topics'; } catch (err) { banner(err.message); }
  });
  browse();
}

async function groups() {
  const g = await api('GET', 'groups');
  main().innerHTML = `<h1>Consumer groups</h1><div class="card"><table id="groups-table"><tr><th>Group</th><th>State</th><th>Protocol type</th></tr>
    ${g.groups.map(x => `<tr data-group="${esc(x.group)}"><td><a href="#/groups/${encodeURIComponent(x.group)}">${esc(x.group)}</a></td><td>${esc(x.state)}</td><td>${esc(x.protocol_type)}</td></tr>`).join('') || '<tr><td colspan="3" class="muted">No groups.</td></tr>'}
    </table></div>`;
}

async function group(id) {
  const enc = encodeURIComponent(id);
  main().innerHTML = `
    <h1>Group ${esc(id)} <span class="badge" id="group-state"></span></h1>
    <div class="card"><h2>Lag</h2><div>Total lag: <span class="stat" id="total-lag">–</span></div><canvas class="chart" id="lag-chart"></canvas><div id="lag-legend"></div></div>
    <div class="card"><h2>Offsets</h2><table id="offsets-table"></table></div>
    <div class="card"><h2>Members</h2><table id="members-table"></table></div>
    <div class="card"><h2>Reset offsets</h2><p class="muted">Only when the group is empty (its consumers stopped).</p>
      <form class="inline" id="reset-form">
        <label>To <select name="to"><option value="earliest">earliest</option><option value="latest">latest</option><option value="offset">offset</option></select></label>
        <label>Offset <input name="offset" type="number" min="0" style="width:100px"></label>
        <label>Topic (all if empty) <input name="topic"></label>
        <button type="submit">Reset</button>
      </form><p id="reset-result"></p></div>`;
  const chart = new Chart($('#lag-chart'), [{name: 'total lag (records)', color: '#dc2626'}], v => String(Math.round(v)));
  $('#lag-legend').innerHTML = chart.legend();
  const refresh = async () => {
    const g = await api('GET', 'groups/' + enc);
    $('#group-state').textContent = g.state;
    $('#total-lag').textContent = g.total_lag;
    chart.push([g.total_lag]);
    $('#offsets-table').innerHTML = '<tr><th>Partition</th><th>Committed</th><th>End</th><th>Lag</th></tr>' +
      g.offsets.map(o => `<tr data-tp="${esc(o.topic)}-${o.partition}"><td>${esc(o.topic)}-${o.partition}</td><td class="num">${o.committed}</td><td class="num">${o.end ?? '–'}</td><td class="num lag">${o.lag ?? '–'}</td></tr>`).join('');
    $('#members-table').innerHTML = '<tr><th>Member</th><th>Client</th><th>Host</th><th>Assignment</th></tr>' +
      (g.members.map(m => `<tr><td>${esc(m.member_id)}</td><td>${esc(m.client_id)}</td><td>${esc(m.host)}</td><td>${m.assignment.map(a => esc(a.topic) + ': ' + a.partitions.join(',')).join('<br>')}</td></tr>`).join('') || '<tr><td colspan="4" class="muted">No members.</td></tr>');
  };
  every(2000, refresh);
  $('#reset-form').addEventListener('submit', async e => {
    e.preventDefault(); const f = new FormData(e.target);
    const body = {to: f.get('to')};
    if (f.get('to') === 'offset') body.offset = Number(f.get('offset'));
    if (f.get('topic')) body.topic = f.get('topic');
    try {
      const r = await api('POST', `groups/${enc}/reset`, body);
      $('#reset-result').innerHTML = '<span class="ok">Reset: ' + r.offsets.map(o => `${esc(o.topic)}-${o.partition} → ${o.offset}`).join(', ') + '</span>';
      refresh();
    } catch (err) { $('#reset-result').innerHTML = `<span class="error">${esc(err.message)}</span>`; }
  });
}

// An error for the banner: the message, with Kafka's error name when it is not in it.
function errText(err) {
  const code = err.body && err.body.code;
  return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}
const opts = (names, selected) => names.map(n => `<option${n === selected ? ' selected' : ''}>${n}</option>`).join('');
const RESOURCE_TYPES = ['TOPIC', 'GROUP', 'CLUSTER', 'TRANSACTIONAL_ID', 'DELEGATION_TOKEN', 'USER'];
const OPERATIONS = ['ALL', 'READ', 'WRITE', 'CREATE', 'DELETE', 'ALTER', 'DESCRIBE', 'CLUSTER_ACTION', 'DESCRIBE_CONFIGS', 'ALTER_CONFIGS', 'IDEMPOTENT_WRITE', 'CREATE_TOKENS', 'DESCRIBE_TOKENS'];

// ACLs: DescribeAcls with a filter, CreateAcls, DeleteAcls of one exact binding. Listing
// errors (no DESCRIBE on the cluster, no authorizer) show in the list card; refused
// changes in the banner.
async function acls() {
  main().innerHTML = `
    <h1>ACLs</h1>
    <div class="card"><h2>Create a binding</h2>
      <form class="inline" id="create-acl">
        <label>Resource type <select name="resource_type">${opts(RESOURCE_TYPES, 'TOPIC')}</select></label>
        <label>Resource name <input name="name" required placeholder="orders or kafka-cluster"></label>
        <label>Pattern <select name="pattern">${opts(['LITERAL', 'PREFIXED'])}</select></label>
        <label>Principal <input name="principal" required placeholder="User:alice"></label>
        <label>Host <input name="host" value="*" style="width:110px"></label>
        <label>Operation <select name="operation">${opts(OPERATIONS, 'READ')}</select></label>
        <label>Permission <select name="permission">${opts(['ALLOW', 'DENY'])}</select></label>
        <button type="submit">Create</button>
      </form></div>
    <div class="card"><h2>Bindings</h2>
      <form class="inline" id="acl-filter">
        <label>Resource type <select name="resource_type">${opts(['ANY', ...RESOURCE_TYPES], 'ANY')}</select></label>
        <label>Resource name <input name="name"></label>
        <label>Pattern <select name="pattern">${opts(['ANY', 'MATCH', 'LITERAL', 'PREFIXED'], 'ANY')}</select></label>
        <label>Principal <input name="principal" placeholder="User:alice"></label>
        <button type="submit">List</button>
      </form>
      <p id="acls-status"></p>
      <table id="acls-table"></table></div>`;
  let shown = [];
  const load = async () => {
    const q = new URLSearchParams();
    new FormData($('#acl-filter')).forEach((v, k) => { if (v && v !== 'ANY') q.set(k, v); });
    try {
      const r = await api('GET', 'acls?' + q);
      shown = r.acls;
      $('#acls-status').innerHTML = `<span class="muted">${shown.length} binding${shown.length === 1 ? '' : 's'}</span>`;
      $('#acls-table').innerHTML = '<tr><th>Resource</th><th>Pattern</th><th>Principal</th><th>Host</th><th>Operation</th><th>Permission</th><th></th></tr>' +
        shown.map((a, i) => `<tr data-acl="${esc([a.resource_type, a.name, a.pattern, a.principal, a.host, a.operation, a.permission].join('|'))}"><td>${esc(a.resource_type)}:${esc(a.name)}</td><td>${esc(a.pattern)}</td><td>${esc(a.principal)}</td><td>${esc(a.host)}</td><td>${esc(a.operation)}</td><td><span class="badge${a.permission === 'DENY' ? ' bad' : ''}">${esc(a.permission)}</span></td><td><button class="danger delete-acl" data-i="${i}">Delete</button></td></tr>`).join('');
    } catch (err) {
      if (err.status === 401) return;
      shown = [];
      $('#acls-table').innerHTML = '';
      $('#acls-status').innerHTML = err.body && err.body.code === 'SECURITY_DISABLED'
        ? '<span class="error" id="security-disabled">No authorizer is configured (the broker answers SECURITY_DISABLED): ACLs are not enforced. Set <code>authorizer.class.name</code> to use them.</span>'
        : `<span class="error">${esc(errText(err))}</span>`;
    }
  };
  $('#acl-filter').addEventListener('submit', e => { e.preventDefault(); load(); });
  $('#create-acl').addEventListener('submit', async e => {
    e.preventDefault();
    const b = Object.fromEntries(new FormData(e.target));
    try { await api('POST', 'acls', b); banner(`Created: ${b.permission} ${b.principal} ${b.operation} on ${b.resource_type}:${b.name} (${b.pattern})`, true); load(); } catch (err) { banner(errText(err)); }
  });
  $('#acls-table').addEventListener('click', async e => {
    const btn = e.target.closest('button.delete-acl');
    if (!btn) return;
    const a = shown[Number(btn.dataset.i)];
    if (!a || !confirm(`Delete ${a.permission} ${a.principal} ${a.operation} on ${a.resource_type}:${a.name}?`)) return;
    try { const r = await api('DELETE', 'acls', a); banner(`Deleted ${r.deleted.length} binding${r.deleted.length === 1 ? '' : 's'}`, true); load(); } catch (err) { banner(errText(err)); }
  });
  await load();
}

const TXN_STATES = ['Empty', 'Ongoing', 'PrepareCommit', 'PrepareAbort', 'CompleteCommit', 'CompleteAbort', 'PrepareEpochFence', 'Dead'];
const fmtMs = ms => ms == null ? '–' : ms < 60000 ? (ms / 1000).toFixed(1) + ' s' : Math.floor(ms / 60000) + ' min ' + Math.round(ms % 60000 / 1000) + ' s';

// Transactions: ListTransactions with kafka-transactions.sh's filters, find-hanging with an
// abort per row (an ABORT marker, as `kafka-transactions.sh abort`).
async function transactions() {
  main().innerHTML = `
    <h1>Transactions</h1>
    <div class="card"><h2>Transactions (this broker's coordinator)</h2>
      <form class="inline" id="txn-filter">
        <label>State <select name="state"><option value="">any</option>${opts(TXN_STATES)}</select></label>
        <label>Producer id <input name="producer_id" type="number" min="0" style="width:110px"></label>
        <label>Running longer than (ms) <input name="min_duration_ms" type="number" min="0" style="width:120px"></label>
        <button type="submit">List</button>
      </form>
      <table id="txn-table"></table></div>
    <div class="card"><h2>Find hanging transactions</h2>
      <p class="muted">Transactions open on partitions this broker leads for longer than the longest transaction timeout that their coordinator no longer knows (as <code>kafka-transactions.sh find-hanging</code>). Aborting one writes an ABORT marker to the partition.</p>
      <form class="inline" id="hanging-form">
        <label>Topic (all if empty) <input name="topic"></label>
        <label>Partition <input name="partition" type="number" min="0" style="width:90px"></label>
        <label>Max transaction timeout (min) <input name="max_timeout_min" type="number" min="0" value="15" style="width:90px"></label>
        <button type="submit">Find</button>
      </form>
      <table id="hanging-table"></table></div>`;
  const list = async () => {
    const q = new URLSearchParams();
    new FormData($('#txn-filter')).forEach((v, k) => { if (v) q.set(k, v); });
    try {
      const r = await api('GET', 'transactions?' + q);
      $('#txn-table').innerHTML = '<tr><th>Transactional id</th><th>Producer id</th><th>State</th></tr>' +
        (r.transactions.map(t => `<tr data-txn="${esc(t.transactional_id)}"><td><a href="#/transactions/${encodeURIComponent(t.transactional_id)}">${esc(t.transactional_id)}</a></td><td class="num">${t.producer_id}</td><td>${esc(t.state)}</td></tr>`).join('') || '<tr><td colspan="3" class="muted">No transactions.</td></tr>');
      if (r.unknown_states.length) banner('Unknown states: ' + r.unknown_states.join(', '));
    } catch (err) { banner(errText(err)); }
  };
  let hanging = [];
  const find = async () => {
    const q = new URLSearchParams();
    new FormData($('#hanging-form')).forEach((v, k) => { if (v !== '') q.set(k, v); });
    try {
      const r = await api('GET', 'hanging?' + q);
      hanging = r.hanging;
      $('#hanging-table').innerHTML = `<tr><th>Partition</th><th>Producer id / epoch</th><th>Coordinator epoch</th><th>Start offset</th><th>Last write</th><th>Verdict</th><th></th></tr>` +
        (hanging.map((h, i) => `<tr data-hanging="${esc(h.topic)}-${h.partition}-${h.start_offset}"><td>${esc(h.topic)}-${h.partition}</td><td class="num">${h.producer_id} / ${h.producer_epoch}</td><td class="num">${h.coordinator_epoch}</td><td class="num">${h.start_offset}</td><td>${new Date(h.last_timestamp).toISOString()} (${h.duration_min} min)</td><td>${esc(h.verdict)}</td><td><button class="danger abort-hanging" data-i="${i}">Abort</button></td></tr>`).join('') ||
        `<tr><td colspan="7" class="muted">None hanging among ${r.partitions_checked} partition${r.partitions_checked === 1 ? '' : 's'} checked.</td></tr>`);
    } catch (err) { banner(errText(err)); }
  };
  $('#txn-filter').addEventListener('submit', e => { e.preventDefault(); list(); });
  $('#hanging-form').addEventListener('submit', e => { e.preventDefault(); find(); });
  $('#hanging-table').addEventListener('click', async e => {
    const btn = e.target.closest('button.abort-hanging');
    if (!btn) return;
    const h = hanging[Number(btn.dataset.i)];
    if (!h || !confirm(`Write an ABORT marker for producer ${h.producer_id} on ${h.topic}-${h.partition}?`)) return;
    try { await api('POST', 'hanging/abort', {topic: h.topic, partition: h.partition, start_offset: h.start_offset}); banner(`Aborted the transaction of producer ${h.producer_id} on ${h.topic}-${h.partition}`, true); find(); } catch (err) { banner(errText(err)); }
  });
  await list();
}

async function transaction(id) {
  const enc = encodeURIComponent(id);
  main().innerHTML = `
    <h1>Transaction ${esc(id)} <span class="badge" id="txn-state"></span> <button class="danger" id="abort-txn" style="float:right">Abort transaction</button></h1>
    <div class="card"><table id="txn-detail"></table></div>
    <div class="card"><h2>Partitions</h2><table id="txn-partitions"></table></div>
    <p class="muted">Abort fences the producer (a new epoch, as <code>kafka-transactions.sh forceTerminateTransaction</code>) and the coordinator aborts its ongoing transaction.</p>`;
  const refresh = async () => {
    const d = await api('GET', 'transactions/' + enc);
    $('#txn-state').textContent = d.state;
    $('#txn-detail').innerHTML = [['Coordinator', d.coordinator], ['Producer id', d.producer_id], ['Producer epoch', d.producer_epoch], ['Timeout', fmtMs(d.timeout_ms)],
      ['Started', d.start_time_ms == null ? '–' : new Date(d.start_time_ms).toISOString()], ['Running for', fmtMs(d.duration_ms)]]
      .map(([k, v]) => `<tr><th>${k}</th><td>${esc(v)}</td></tr>`).join('');
    $('#txn-partitions').innerHTML = '<tr><th>Partition</th><th>Open since offset</th><th>Coordinator epoch</th></tr>' +
      (d.partitions.map(p => `<tr data-tp="${esc(p.topic)}-${p.partition}"><td>${esc(p.topic)}-${p.partition}</td><td class="num">${p.open ? p.open.start_offset : esc(p.error || '–')}</td><td class="num">${p.open ? p.open.coordinator_epoch : '–'}</td></tr>`).join('') || '<tr><td colspan="3" class="muted">No partitions in a transaction.</td></tr>');
  };
  $('#abort-txn').addEventListener('click', async () => {
    if (!confirm(`Abort the transaction of ${id} (fences its producer)?`)) return;
    try { const r = await api('POST', `transactions/${enc}/abort`); banner(`Aborted ${id}: ${r.previous_state} → ${r.transaction.state}`, true); refresh(); } catch (err) { banner(errText(err)); }
  });
  every(2000, refresh);
}

// ---- login and routing -----------------------------------------------------------------
// Pages render one at a time, in order, and a render superseded by a newer navigation is
// skipped: a page's render awaits API calls, so without this a slow render started earlier
// (the overview start() shows after login) lands after, and over, the page navigated to since.
let renders = Promise.resolve();
let navigations = 0;
function render(f) {
  const ticket = ++navigations;
  renders = renders.then(() => (ticket === navigations ? f() : undefined)).catch(() => {});
  return renders;
}

function showLogin() { return render(loginPage); }

function loginPage() {
  timers.forEach(clearInterval); timers = [];
  main().innerHTML = $('#login-tpl').innerHTML;
  const sel = $('#login-form select');
  (session && session.mechanisms || []).forEach(m => { const o = document.createElement('option'); o.textContent = m; sel.appendChild(o); });
  $('#login-form').addEventListener('submit', async e => {
    e.preventDefault(); const f = new FormData(e.target);
    try {
      await api('POST', 'login', {username: f.get('username'), password: f.get('password'), mechanism: f.get('mechanism') || undefined});
      await start();
    } catch (err) { $('#login-error').textContent = err.message; }
  });
}

function route() { return render(routePage); }

async function routePage() {
  timers.forEach(clearInterval); timers = [];
  banner(flashMsg, true);
  flashMsg = null;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  document.querySelectorAll('nav a').forEach(a => a.classList.toggle('active', a.dataset.nav === (parts[0] || 'overview')));
  try {
    if (parts[0] === 'topics' && parts[1]) await topic(parts[1]);
    else if (parts[0] === 'topics') await topics();
    else if (parts[0] === 'groups' && parts[1]) await group(parts[1]);
    else if (parts[0] === 'groups') await groups();
    else if (parts[0] === 'acls') await acls();
    else if (parts[0] === 'transactions' && parts[1]) await transaction(parts[1]);
    else if (parts[0] === 'transactions') await transactions();
    else await overview();
  } catch (err) {
    if (err.status !== 401) main().innerHTML = `<div class="card error">${esc(err.message)}</div>`;
  }
}

async function start() {
  session = await api('GET', 'session');
  $('#who').textContent = session.principal ? 'as ' + session.principal : '';
  $('#logout').hidden = !(session.security && session.principal);
  if (session.security && !session.principal) { showLogin(); return; }
  route();
}

window.addEventListener('hashchange', route);
$('#logout').addEventListener('click', async () => { await api('POST', 'logout'); session.principal = null; start(); });
start().catch(err => banner(err.message));
