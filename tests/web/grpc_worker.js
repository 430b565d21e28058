// A redispool worker in JavaScript over the native gRPC Work stream (@grpc/grpc-js and
// @grpc/proto-loader, loading the .proto shipped in the Python package). Used by
// tests/test_grpc_node.py:
//   node grpc_worker.js PROTO ADDRESS TOKEN QUEUE WORKER_ID CREDIT WORK_MS
// Prints "W <id> <token>" when a job arrives, "D <id>" when the server confirmed its
// completion, and exits when the stream ends.
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [proto, address, token, queue, workerId, creditText, workText] = process.argv.slice(2);
const credit = Number(creditText), workMs = Number(workText);
const pkg = grpc.loadPackageDefinition(loader.loadSync(proto, { keepCase: true, defaults: true }));
const client = new pkg.redispool.v1.Jobs(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set("x-api-key", token);

const call = client.Work(metadata);
let pending = [];      // completions not sent yet: acked in batches
let flushing = null;

function flush() {
  flushing = null;
  if (!pending.length) return;
  const batch = pending;
  pending = [];
  call.write({ ack: { completed: batch } });
  call.write({ credit: batch.length });      // room for as many more
}

call.on("data", (reply) => {
  if (reply.jobs) {
    for (const job of reply.jobs.jobs) {
      process.stdout.write(`W ${job.id} ${job.token}\n`);
      JSON.parse(job.payload);
      setTimeout(() => {
        pending.push({ job: { queue: job.queue, id: job.id, token: job.token }, result: JSON.stringify({ by: workerId }) });
        if (!flushing) flushing = setTimeout(flush, 2);
      }, workMs);
    }
  } else if (reply.results) {
    for (const r of reply.results.results) {
      if (r.ok) process.stdout.write(`D ${r.id}\n`);
      else process.stderr.write(`ack of ${r.id} refused: ${r.error}\n`);
    }
  }
});
call.on("error", (err) => { process.stderr.write(`stream error: ${err.code} ${err.details}\n`); process.exit(1); });
call.on("end", () => process.exit(0));
call.write({ open: { queues: [queue], worker_id: workerId, lease: 30, credit } });
