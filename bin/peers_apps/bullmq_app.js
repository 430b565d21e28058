// BullMQ for bin/peers (node; bullmq from the npm registry in $NODE_PATH, outside the repo).
//   node bullmq_app.js worker               a Worker with its defaults (concurrency 1) whose
//                                           handler does one INCR bench:handled on its own
//                                           ioredis connection (node has no redis-py)
//   node bullmq_app.js produce JOBS BATCH   JOBS jobs by queue.add, one at a time (BATCH 0),
//                                           or by queue.addBulk of BATCH, talking to bin/peers
//                                           in lines as bin/peers_apps/produce.py does
const { Queue, Worker } = require("bullmq");
const IORedis = require("ioredis");
const readline = require("readline");

const url = new URL(process.env.PEERS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const QUEUE = "peers";

function work() {
  const store = new IORedis(connection);
  const worker = new Worker(QUEUE, async () => { await store.incr("bench:handled"); }, { connection });
  process.on("SIGTERM", async () => {
    await worker.close();
    store.disconnect();
    process.exit(0);
  });
}

async function produce(jobs, batch) {
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const queue = new Queue(QUEUE, { connection });
  const step = batch || 1;
  const call = batch
    ? (lo, hi) => queue.addBulk(Array.from({ length: hi - lo }, (_, k) => ({ name: "n", data: { n: lo + k } })))
    : (lo) => queue.add("n", { n: lo });
  await call(0, Math.min(jobs, step));
  console.log("ready");
  await lines.next();
  const started = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  for (let lo = step; lo < jobs; lo += step) {
    await call(lo, Math.min(jobs, lo + step));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  const cpuSeconds = (used.user + used.system) / 1e6;
  console.log(JSON.stringify({ jobs: jobs - Math.min(jobs, step), seconds, cpu_seconds: cpuSeconds }));
  await lines.next();
  await queue.close();
  process.exit(0);
}

if (process.argv[2] === "worker") {
  work();
} else {
  produce(Number(process.argv[3]), Number(process.argv[4])).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
