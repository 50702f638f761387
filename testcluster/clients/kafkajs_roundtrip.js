// Produce N records with kafkajs, then consume them through a consumer group and check each
// comes back once, in order per partition, with key, value, headers and timestamp.
// usage: node kafkajs_roundtrip.js <bootstrap> <topic> <n>
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, nArg] = process.argv.slice(2);
const n = parseInt(nArg, 10);
const BASE_TS = 1700000000000;
const kafka = new Kafka({ clientId: 'kafkajs-roundtrip', brokers: bootstrap.split(','), logLevel: logLevel.WARN });

function fail(msg) {
  console.log('FAIL ' + msg);
  process.exit(1);
}

async function main() {
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  const batch = 1000;
  for (let start = 0; start < n; start += batch) {
    const messages = [];
    for (let i = start; i < Math.min(n, start + batch); i++) {
      messages.push({ key: `k${i}`, value: `v${i}`, headers: { i: String(i) }, timestamp: String(BASE_TS + i) });
    }
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `g-${topic}`, sessionTimeout: 10000, rebalanceTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  const last = new Map();
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const i = parseInt(message.key.toString().slice(1), 10);
      if (seen.has(i)) fail(`record ${i} twice`);
      if (message.value.toString() !== `v${i}`) fail(`value of ${i}`);
      if (message.headers.i.toString() !== String(i)) fail(`headers of ${i}`);
      if (message.timestamp !== String(BASE_TS + i)) fail(`timestamp of ${i}: ${message.timestamp}`);
      const prev = last.get(partition);
      if (prev !== undefined && prev >= i) fail(`partition ${partition}: ${i} after ${prev}`);
      last.set(partition, i);
      seen.add(i);
      if (seen.size === n) done();
    },
  });
  const timer = setTimeout(() => fail(`consumed ${seen.size} of ${n}`), 90000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  console.log('OK ' + n);
  process.exit(0);
}

main().catch((e) => fail(e.stack || String(e)));
