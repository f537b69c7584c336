#!/usr/bin/env node
// Browser tests of Nagare's web console: starts a real `nagare server` (a PLAINTEXT and a
// SASL_PLAINTEXT listener, the StandardAuthorizer, and `http.listeners`), then drives the
// console in Debian's headless Chromium with playwright-core: log in (refused, then as a
// user without ACLs who is refused a topic, then as a super user), create a topic, produce
// a message and find it in the message browser, watch a consumer group's lag rise and fall
// while a real client (confluent-kafka-python) produces and consumes, reset its offsets;
// admin creates an ACL, alice is refused one, admin deletes it; a transaction a real
// transactional producer left open is listed, described and aborted.
// Screenshots go to target/console-screenshots/ (CI artefacts); NAGARE_UPDATE_SCREENSHOT=1
// also refreshes docs/images/console.png (the README's).
//
// The binary is $NAGARE_BIN, else target/release/nagare, else target/debug/nagare; the
// browser $CHROMIUM, else /usr/bin/chromium. The last line is `N passed, M failed`; the
// exit status is non-zero when M > 0.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHOTS = path.join(REPO, 'target', 'console-screenshots');
const JAAS = 'org.apache.kafka.common.security.plain.PlainLoginModule required ' +
  'username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";';
const TOPIC = 'console-orders';
const GROUP = 'console-billing';
const TXN = 'console-txn';

const results = [];
function check(name, ok, detail = '') {
  results.push([name, ok]);
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? ': ' + detail : ''}`);
}
async function step(name, f) {
  try { await f(); check(name, true); } catch (e) { check(name, false, String(e && e.stack || e).split('\n').slice(0, 3).join(' | ')); }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

function binary() {
  for (const p of [process.env.NAGARE_BIN, 'target/release/nagare', 'target/debug/nagare']) {
    if (p && fs.existsSync(path.resolve(REPO, p))) return path.resolve(REPO, p);
  }
  throw new Error('no nagare binary: build it or set NAGARE_BIN');
}

// A real Kafka client in Python (confluent-kafka, installed by scripts/test.sh for the
// compatibility script): `produce N` or `consume` (reads to the end in the group, commits,
// leaves).
function client(bootstrap, action, n = 0) {
  const code = `
import sys
from confluent_kafka import Producer, Consumer, TopicPartition
b, action, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if action == 'produce':
    p = Producer({'bootstrap.servers': b, 'linger.ms': 5})
    for i in range(n):
        p.produce('${TOPIC}', key=b'k%d' % i, value=b'{"order": %d}' % i, partition=i % 3)
    assert p.flush(20) == 0
elif action == 'txn':
    # A transactional producer that writes and then dies: its transaction stays open.
    import os
    p = Producer({'bootstrap.servers': b, 'transactional.id': '${TXN}', 'transaction.timeout.ms': 60000})
    p.init_transactions(20)
    p.begin_transaction()
    p.produce('${TOPIC}', key=b'txn', value=b'uncommitted', partition=0)
    assert p.flush(20) == 0
    sys.stdout.flush()
    os._exit(0)
else:
    c = Consumer({'bootstrap.servers': b, 'group.id': '${GROUP}', 'auto.offset.reset': 'earliest',
                  'enable.auto.commit': False, 'session.timeout.ms': 6000})
    c.subscribe(['${TOPIC}'])
    import time
    # Until 2 s without a record once records came (the join takes a moment), 30 s at most.
    got, last, start = 0, None, time.time()
    while time.time() - start < 30 and (last is None or time.time() - last < 2):
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1; last = time.time()
    c.commit(asynchronous=False)
    c.close()
    print(got)
`;
  const r = spawnSync('python3', ['-c', code, bootstrap, action, String(n)], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`python ${action} failed: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

async function startServer(dir) {
  const [port, sport, cport, hport] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const props = {
    'node.id': '1',
    'listeners': `PLAINTEXT://127.0.0.1:${port},SASL://127.0.0.1:${sport},CONTROLLER://127.0.0.1:${cport}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port},SASL://127.0.0.1:${sport}`,
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,SASL:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT',
    'listener.name.sasl.sasl.enabled.mechanisms': 'PLAIN,SCRAM-SHA-256',
    'listener.name.sasl.plain.sasl.jaas.config': JAAS,
    'authorizer.class.name': 'org.apache.kafka.metadata.authorizer.StandardAuthorizer',
    // The Python client uses the PLAINTEXT listener (ANONYMOUS); alice has no ACLs.
    'super.users': 'User:admin;User:ANONYMOUS',
    'connection.failed.authentication.delay.ms': '100',
    'group.initial.rebalance.delay.ms': '0',
    'offsets.topic.num.partitions': '3',
    'transaction.state.log.num.partitions': '3',
    'http.listeners': `http://127.0.0.1:${hport}`,
    'log.dirs': path.join(dir, 'data'),
  };
  const config = path.join(dir, 'server.properties');
  fs.writeFileSync(config, Object.entries(props).map(([k, v]) => `${k}=${v}\n`).join(''));
  const bin = binary();
  const id = spawnSync(bin, ['storage', 'random-uuid'], { encoding: 'utf8' }).stdout.trim();
  const fmt = spawnSync(bin, ['storage', 'format', '-t', id, '-c', config], { encoding: 'utf8' });
  if (fmt.status !== 0) throw new Error('format failed: ' + fmt.stdout + fmt.stderr);
  const log = fs.openSync(path.join(dir, 'server.log'), 'w');
  const proc = spawn(bin, ['server', '-c', config], { stdio: ['ignore', log, log], env: { ...process.env, NO_COLOR: '1' } });
  const base = `http://127.0.0.1:${hport}`;
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error('nagare exited: ' + fs.readFileSync(path.join(dir, 'server.log'), 'utf8'));
    try { if ((await fetch(base + '/health/ready')).status === 200) break; } catch (_) { /* not up yet */ }
    await new Promise(r => setTimeout(r, 100));
  }
  return { proc, base, bootstrap: `127.0.0.1:${port}` };
}

async function main() {
  const started = Date.now();
  fs.mkdirSync(SHOTS, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nagare-console-'));
  fs.mkdirSync(path.join(dir, 'data'));
  let server; let context;
  try {
    server = await startServer(dir);
    check('server ready with http.listeners', true, server.base);
    context = await chromium.launchPersistentContext(path.join(dir, 'chromium-profile'), {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1360, height: 900 },
    });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(15000);
    const errors = [];
    page.on('pageerror', e => errors.push(String(e)));
    const shot = name => page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
    // Waits until an element matching `sel` contains `text`.
    const waitText = (sel, text) => page.waitForFunction(
      ([s, t]) => [...document.querySelectorAll(s)].some(e => e.textContent.includes(t)), [sel, text]);
    // Waits until the group page shows a total lag of `n`.
    const lagIs = n => page.waitForFunction(v => document.querySelector('#total-lag')?.textContent === v, String(n));
    const login = async (user, password) => {
      await page.fill('#login-form input[name=username]', user);
      await page.fill('#login-form input[name=password]', password);
      await page.click('#login-form button[type=submit]');
    };

    await step('security on: the console asks for credentials', async () => {
      await page.goto(server.base + '/');
      await page.waitForSelector('#login-form');
      await shot('01-login');
    });
    await step('a wrong password is refused', async () => {
      await login('alice', 'wrong');
      await page.waitForFunction(() => /login failed/.test(document.querySelector('#login-error')?.textContent));
    });
    await step('alice (no ACLs) logs in and is refused a topic', async () => {
      // The overview shown after login answers late (as on a loaded machine): the topics
      // page navigated to meanwhile must stay, not be overwritten when the overview lands.
      const slow = async r => { await new Promise(res => setTimeout(res, 1500)); await r.continue().catch(() => {}); };
      await page.route('**/api/overview', slow);
      const overviewLanded = page.waitForResponse(r => r.url().endsWith('/api/overview'), { timeout: 15000 });
      await login('alice', 'alice-secret');
      await waitText('#who', 'User:alice');
      await page.goto(server.base + '/#/topics');
      await page.waitForSelector('#create-topic');
      await overviewLanded;
      await page.waitForTimeout(300);
      await page.unroute('**/api/overview', slow);
      if (!(await page.$('#create-topic'))) throw new Error('the late overview replaced the topics page');
      await page.fill('#create-topic input[name=name]', 'alice-topic');
      await page.click('#create-topic button[type=submit]');
      await page.waitForFunction(() => /TOPIC_AUTHORIZATION_FAILED/.test(document.querySelector('#banner')?.textContent));
      await shot('02-denied');
      await page.click('#logout');
      await page.waitForSelector('#login-form');
    });
    await step('admin logs in; the overview shows the broker, controller and quorum', async () => {
      await login('admin', 'admin-secret');
      await waitText('#who', 'User:admin');
      await page.goto(server.base + '/#/overview');
      await page.waitForSelector('#brokers-table');
      const brokers = await page.textContent('#stat-brokers');
      if (brokers.trim() !== '1') throw new Error('brokers: ' + brokers);
      await waitText('main p', 'Leader 1');
      if ((await page.textContent('#stat-urp')).trim() !== '0') throw new Error('under-replicated partitions');
    });
    await step('create a topic in the browser', async () => {
      await page.goto(server.base + '/#/topics');
      await page.fill('#create-topic input[name=name]', TOPIC);
      await page.fill('#create-topic input[name=partitions]', '3');
      await page.fill('#create-topic input[name=configs]', 'retention.ms=3600000');
      await page.click('#create-topic button[type=submit]');
      await page.waitForSelector('#partitions-table');
      const rows = await page.$$('#partitions-table tr');
      if (rows.length !== 4) throw new Error('partition rows: ' + rows.length);
      await waitText('#configs-table tr[data-config="retention.ms"]', 'DYNAMIC_TOPIC_CONFIG');
    });
    await step('produce a message and find it in the message browser', async () => {
      await page.selectOption('#produce-form select[name=partition]', '1');
      await page.fill('#produce-form input[name=key]', 'order-42');
      await page.fill('#produce-form textarea[name=value]', '{"order":42,"item":"tea"}');
      await page.fill('#produce-form input[name=hkey]', 'source');
      await page.fill('#produce-form input[name=hvalue]', 'console-test');
      await page.click('#produce-form button[type=submit]');
      await waitText('#messages tr.msg', 'order-42');
      // As JSON (pretty-printed) and as hex.
      await page.selectOption('#browse-form select[name=format]', 'json');
      await page.selectOption('#browse-form select[name=from]', 'beginning');
      await page.click('#browse-form button[type=submit]');
      await waitText('#messages pre', '"item": "tea"');
      await page.selectOption('#browse-form select[name=format]', 'hex');
      await page.click('#browse-form button[type=submit]');
      await waitText('#messages pre', '6f726465722d3432'); // "order-42"
      await page.selectOption('#browse-form select[name=format]', 'text');
      await page.click('#browse-form button[type=submit]');
      await waitText('#messages pre', 'source: console-test');
      await shot('03-topic');
    });
    await step('a real client produces 30 messages; the browser finds them', async () => {
      client(server.bootstrap, 'produce', 30);
      await page.selectOption('#browse-form select[name=from]', 'offset');
      await page.fill('#browse-form input[name=offset]', '0');
      await page.selectOption('#browse-form select[name=partition]', '2');
      await page.click('#browse-form button[type=submit]');
      await waitText('#messages tr.msg', '{"order": 29}');
    });
    await step('the group consumes everything: lag 0', async () => {
      const got = client(server.bootstrap, 'consume');
      if (got !== '31') throw new Error('consumed ' + got);
      await page.goto(server.base + '/#/groups');
      await page.waitForSelector(`#groups-table tr[data-group="${GROUP}"]`);
      await page.click(`#groups-table a >> text=${GROUP}`);
      await lagIs(0);
      await waitText('#group-state', 'Empty');
    });
    await step('the lag rises as the client produces 45 more', async () => {
      client(server.bootstrap, 'produce', 45);
      await lagIs(45);
      await waitText('#offsets-table td.lag', '15');
      // A few polls for the chart.
      await page.waitForTimeout(4500);
    });
    await step('the lag falls as the group consumes again', async () => {
      client(server.bootstrap, 'consume');
      await lagIs(0);
      await page.waitForTimeout(4500);
    });
    await step('reset the empty group to earliest (lag back to all 76), then to offset 5', async () => {
      await page.selectOption('#reset-form select[name=to]', 'earliest');
      await page.click('#reset-form button[type=submit]');
      await waitText('#reset-result', 'Reset:');
      await lagIs(76);
      await page.waitForTimeout(2500);
      await shot('04-group');
      await page.selectOption('#reset-form select[name=to]', 'offset');
      await page.fill('#reset-form input[name=offset]', '5');
      await page.click('#reset-form button[type=submit]');
      await lagIs(76 - 15);
    });
    await step('alter a topic config, reset it, delete a topic', async () => {
      await page.goto(server.base + '/#/topics/' + TOPIC);
      await page.fill('#alter-config input[name=name]', 'cleanup.policy');
      await page.fill('#alter-config input[name=value]', 'compact');
      await page.click('#alter-config button[type=submit]');
      await waitText('#configs-table tr[data-config="cleanup.policy"]', 'compact');
      await waitText('#configs-table tr[data-config="cleanup.policy"]', 'DYNAMIC_TOPIC_CONFIG');
      await page.fill('#alter-config input[name=name]', 'cleanup.policy');
      await page.click('#reset-config');
      await waitText('#configs-table tr[data-config="cleanup.policy"]', 'DEFAULT_CONFIG');
      await page.goto(server.base + '/#/topics');
      await page.fill('#create-topic input[name=name]', 'console-scratch');
      await page.fill('#create-topic input[name=partitions]', '1');
      await page.click('#create-topic button[type=submit]');
      await page.waitForSelector('#delete-topic');
      page.once('dialog', d => d.accept());
      await page.click('#delete-topic');
      await waitText('#banner', 'Deleted console-scratch');
      await page.waitForSelector('#topics-table');
      if (await page.$('#topics-table tr[data-topic="console-scratch"]')) throw new Error('still listed');
    });
    await step('the overview charts the throughput', async () => {
      await page.goto(server.base + '/#/overview');
      await page.waitForSelector('#tp-chart');
      for (let i = 0; i < 4; i++) {
        client(server.bootstrap, 'produce', 100 * (i + 1));
        await page.waitForTimeout(2000);
      }
      await shot('05-overview');
    });
    const aclRow = '#acls-table tr[data-acl="TOPIC|console-orders|LITERAL|User:alice|*|READ|ALLOW"]';
    await step('ACLs: admin creates a binding in the browser and sees it listed', async () => {
      await page.goto(server.base + '/#/acls');
      await page.waitForSelector('#acls-status span');
      await page.selectOption('#create-acl select[name=resource_type]', 'TOPIC');
      await page.fill('#create-acl input[name=name]', TOPIC);
      await page.fill('#create-acl input[name=principal]', 'User:alice');
      await page.selectOption('#create-acl select[name=operation]', 'READ');
      await page.click('#create-acl button[type=submit]');
      await page.waitForSelector(aclRow);
      await waitText('#banner', 'Created: ALLOW User:alice READ');
      // The filter: by principal, and a MATCH on a name the binding does not cover.
      await page.fill('#acl-filter input[name=principal]', 'User:alice');
      await page.click('#acl-filter button[type=submit]');
      await page.waitForSelector(aclRow);
      await shot('06-acls');
    });
    await step('transactions: a producer left a transaction open; listed as Ongoing and described', async () => {
      client(server.bootstrap, 'txn');
      await page.goto(server.base + '/#/transactions');
      await page.selectOption('#txn-filter select[name=state]', 'Ongoing');
      await page.click('#txn-filter button[type=submit]');
      await waitText(`#txn-table tr[data-txn="${TXN}"]`, 'Ongoing');
      await page.click(`#txn-table a >> text=${TXN}`);
      await waitText('#txn-state', 'Ongoing');
      await waitText(`#txn-partitions tr[data-tp="${TOPIC}-0"]`, TOPIC);
      await shot('07-transactions');
    });
    await step('transactions: abort it in the browser; CompleteAbort, no longer Ongoing', async () => {
      page.once('dialog', d => d.accept());
      await page.click('#abort-txn');
      await waitText('#banner', `Aborted ${TXN}: Ongoing → CompleteAbort`);
      await waitText('#txn-state', 'CompleteAbort');
      await page.goto(server.base + '/#/transactions');
      await page.selectOption('#txn-filter select[name=state]', 'Ongoing');
      await page.click('#txn-filter button[type=submit]');
      await waitText('#txn-table', 'No transactions.');
      await page.click('#hanging-form button[type=submit]');
      await waitText('#hanging-table', 'None hanging');
    });
    await step('alice may not list or create ACLs: CLUSTER_AUTHORIZATION_FAILED', async () => {
      await page.click('#logout');
      await page.waitForSelector('#login-form');
      await login('alice', 'alice-secret');
      await waitText('#who', 'User:alice');
      await page.goto(server.base + '/#/acls');
      await waitText('#acls-status', 'CLUSTER_AUTHORIZATION_FAILED');
      await page.fill('#create-acl input[name=name]', 'alice-topic');
      await page.fill('#create-acl input[name=principal]', 'User:alice');
      await page.selectOption('#create-acl select[name=operation]', 'ALL');
      await page.click('#create-acl button[type=submit]');
      await page.waitForFunction(() => /creating the ACL.*CLUSTER_AUTHORIZATION_FAILED/.test(document.querySelector('#banner')?.textContent));
      await page.click('#logout');
      await page.waitForSelector('#login-form');
    });
    await step('admin deletes the binding in the browser', async () => {
      await login('admin', 'admin-secret');
      await waitText('#who', 'User:admin');
      await page.goto(server.base + '/#/acls');
      await page.waitForSelector(aclRow);
      page.once('dialog', d => d.accept());
      await page.click(`${aclRow} button.delete-acl`);
      await waitText('#banner', 'Deleted 1 binding');
      await waitText('#acls-status', '0 bindings');
    });
    await step('no script errors in the page', async () => {
      if (errors.length) throw new Error(errors.join('; '));
    });
    if (process.env.NAGARE_UPDATE_SCREENSHOT === '1') {
      fs.mkdirSync(path.join(REPO, 'docs', 'images'), { recursive: true });
      fs.copyFileSync(path.join(SHOTS, '04-group.png'), path.join(REPO, 'docs', 'images', 'console.png'));
    }
  } catch (e) {
    check('console browser test setup', false, String(e && e.stack || e));
  } finally {
    if (context) await context.close().catch(() => {});
    if (server) server.proc.kill('SIGTERM');
    if (results.some(([, ok]) => !ok)) {
      try { console.log('--- server log (tail) ---\n' + fs.readFileSync(path.join(dir, 'server.log'), 'utf8').split('\n').slice(-40).join('\n')); } catch (_) { /* none */ }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const failed = results.filter(([, ok]) => !ok).length;
  console.log(`console browser tests took ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
