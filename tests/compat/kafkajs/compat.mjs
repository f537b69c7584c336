// kafkajs against a real nagare server: run by tests/compat/run_compat.py
// (`node compat.mjs <bootstrap>`). kafkajs is a pure-JavaScript client with its own protocol code
// (and its own, older, API version choices), so it exercises paths librdkafka does not.
// Every check prints one JSON line {name, ok, detail}; the exit code is 0 when all passed.
import { randomUUID } from 'node:crypto';
import kafkajs from 'kafkajs';

const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = kafkajs;
const bootstrap = process.argv[2];
if (!bootstrap) {
  console.error('usage: node compat.mjs HOST:PORT');
  process.exit(2);
}
const kafka = new Kafka({
  clientId: 'nagare-compat-kafkajs',
  brokers: [bootstrap],
  logLevel: logLevel.NOTHING,
  retry: { retries: 8 },
});
const unique = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;
const results = [];

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function check(name, fn) {
  try {
    const detail = (await fn()) ?? '';
    results.push({ name, ok: true, detail });
  } catch (e) {
    results.push({ name, ok: false, detail: String(e && e.stack ? e.stack : e) });
  }
  console.log(JSON.stringify(results[results.length - 1]));
}

async function withAdmin(fn) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

// Consume `n` records of `topic` in group `groupId`, committing as it goes; resolves with the
// records per partition in offset order.
async function consumeGroup(topic, groupId, n, timeoutMs = 60000) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const got = {};
  let count = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    autoCommit: true,
    autoCommitInterval: 100,
    eachMessage: async ({ partition, message }) => {
      (got[partition] ??= []).push({
        offset: Number(message.offset),
        key: message.key?.toString(),
        value: message.value?.toString(),
        headers: Object.fromEntries(
          Object.entries(message.headers ?? {}).map(([k, v]) => [k, v?.toString()])),
      });
      count += 1;
      if (count >= n) done();
    },
  });
  const timer = setTimeout(() => done(), timeoutMs);
  await finished;
  clearTimeout(timer);
  // Commit what was consumed (while the consumer still runs), so the group offsets are exact.
  await consumer.commitOffsets(Object.entries(got).map(([p, recs]) => ({
    topic, partition: Number(p), offset: String(recs[recs.length - 1].offset + 1),
  })));
  await consumer.disconnect();
  return { got, count };
}

await check('kafkajs admin createTopics/fetchTopicMetadata/describeConfigs/createPartitions/deleteTopics', async () => {
  const topic = unique('kjs-admin');
  return withAdmin(async (admin) => {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: 2, replicationFactor: 1,
        configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
      waitForLeaders: true,
    });
    expect(created === true, `createTopics returned ${created}`);
    let dup = 'accepted';
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], validateOnly: false });
      dup = 'no error (returned false)';
    } catch (e) {
      dup = e.type ?? e.name;
    }
    // kafkajs returns false for an existing topic rather than throwing: either is Kafka's answer.
    expect(['TOPIC_ALREADY_EXISTS', 'no error (returned false)'].includes(dup) ||
      String(dup).includes('TOPIC_ALREADY_EXISTS'), `duplicate create: ${dup}`);
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(md.topics[0].partitions.length === 2, `metadata ${JSON.stringify(md)}`);
    const cfg = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    });
    const entry = cfg.resources[0].configEntries.find((c) => c.configName === 'retention.ms');
    expect(entry && entry.configValue === '3600000', `retention.ms ${JSON.stringify(entry)}`);
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic,
        configEntries: [{ name: 'retention.ms', value: '7200000' }] }],
    });
    const cfg2 = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    });
    const entry2 = cfg2.resources[0].configEntries.find((c) => c.configName === 'retention.ms');
    expect(entry2 && entry2.configValue === '7200000', `after alterConfigs ${JSON.stringify(entry2)}`);
    await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
    const md2 = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(md2.topics[0].partitions.length === 3, 'createPartitions 2→3 not visible');
    const cluster = await admin.describeCluster();
    expect(cluster.brokers.length === 1 && cluster.controller !== null,
      `describeCluster ${JSON.stringify(cluster)}`);
    await admin.deleteTopics({ topics: [topic] });
    const listed = await admin.listTopics();
    expect(!listed.includes(topic), 'deleted topic still listed');
    return `duplicate create: ${dup}; alterConfigs; partitions 2→3; ${cluster.brokers.length} broker`;
  });
});

for (const [label, compression] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
  await check(`kafkajs producer (idempotent, ${label}) + group consumer + commit + offsets admin`, async () => {
    const topic = unique(`kjs-${label}`);
    const groupId = unique('kjs-group');
    await withAdmin((admin) => admin.createTopics({
      topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true }));
    const n = 600;
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const expected = { 0: [], 1: [] };
    try {
      for (let b = 0; b < n; b += 100) {
        const messages = [];
        for (let i = b; i < b + 100; i += 1) {
          const m = { partition: i % 2, key: `k${i}`, value: `kjs-${label}-${i}`.repeat(1 + (i % 5)),
            headers: { h: String(i) } };
          messages.push(m);
          expected[i % 2].push({ key: m.key, value: m.value, headers: m.headers });
        }
        const acks = await producer.send({ topic, acks: -1, compression, messages });
        expect(acks.every((a) => a.errorCode === 0), `produce acks ${JSON.stringify(acks)}`);
      }
    } finally {
      await producer.disconnect();
    }
    const { got, count } = await consumeGroup(topic, groupId, n);
    expect(count === n, `consumed ${count} of ${n}`);
    for (const p of [0, 1]) {
      const recs = got[p] ?? [];
      expect(recs.every((r, i) => r.offset === i), `partition ${p}: offsets not dense`);
      const want = JSON.stringify(expected[p]);
      const have = JSON.stringify(recs.map(({ key, value, headers }) => ({ key, value, headers })));
      expect(want === have, `partition ${p}: records differ`);
    }
    return withAdmin(async (admin) => {
      const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
      const byPart = Object.fromEntries(offsets[0].partitions.map((p) => [p.partition, p.offset]));
      expect(byPart[0] === String(n / 2) && byPart[1] === String(n / 2),
        `committed ${JSON.stringify(byPart)}`);
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId);
      expect(groups.includes(groupId), `${groupId} not listed`);
      const described = await admin.describeGroups([groupId]);
      expect(described.groups[0].state === 'Empty', `group state ${described.groups[0].state}`);
      // Offset reset on the empty group: kafkajs commits the EARLIEST sentinel (-2) itself, which
      // Kafka stores as given; the group's next consumer then starts from the log start.
      await admin.resetOffsets({ groupId, topic, earliest: true });
      const reset = await admin.fetchOffsets({ groupId, topics: [topic] });
      const resetTo = reset[0].partitions.map((p) => p.offset);
      expect(resetTo.every((o) => o === '-2'), `reset offsets ${resetTo}`);
      const again = await consumeGroup(topic, groupId, n);
      expect(again.count === n && again.got[0][0].offset === 0 && again.got[1][0].offset === 0,
        `after the reset the group re-read ${again.count} of ${n}`);
      const lows = await admin.fetchTopicOffsets(topic);
      expect(lows.every((o) => o.high === String(n / 2) && o.low === '0'),
        `topic offsets ${JSON.stringify(lows)}`);
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '50' }] });
      const after = await admin.fetchTopicOffsets(topic);
      const p0 = after.find((o) => o.partition === 0);
      expect(p0.low === '50', `low watermark after deleteTopicRecords ${JSON.stringify(p0)}`);
      await admin.deleteGroups([groupId]);
      return `${n} records, group committed ${n / 2}+${n / 2}, reset to earliest, deleteRecords`;
    });
  });
}

await check('kafkajs transactional producer commit and abort (read_committed consumer)', async () => {
  const topic = unique('kjs-txn');
  await withAdmin((admin) => admin.createTopics({
    topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true }));
  const producer = kafka.producer({ transactionalId: unique('kjs-tx'), idempotent: true,
    maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const commit = await producer.transaction();
    await commit.send({ topic, messages: [{ value: 'c1' }, { value: 'c2' }] });
    await commit.commit();
    const abort = await producer.transaction();
    await abort.send({ topic, messages: [{ value: 'a1' }] });
    await abort.abort();
    const commit2 = await producer.transaction();
    await commit2.send({ topic, messages: [{ value: 'c3' }] });
    await commit2.commit();
  } finally {
    await producer.disconnect();
  }
  const consumer = kafka.consumer({ groupId: unique('kjs-rc'), readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const values = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({ eachMessage: async ({ message }) => {
    values.push(message.value.toString());
    if (values.length >= 3) done();
  } });
  const timer = setTimeout(() => done(), 30000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  expect(JSON.stringify(values) === JSON.stringify(['c1', 'c2', 'c3']),
    `read_committed saw ${JSON.stringify(values)}`);
  return 'read_committed saw c1 c2 c3 (the aborted a1 skipped)';
});

const failed = results.filter((r) => !r.ok).length;
process.exit(failed ? 1 : 0);
