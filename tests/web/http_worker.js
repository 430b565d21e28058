// A redispool worker in JavaScript, talking to `redispool serve` over HTTP only: what a
// team without Python would write. Used by tests/test_http_polyglot.py.
//
//   node http_worker.js BASE_URL TOKEN QUEUE WORKER_ID MODE WORK_MS
//
// MODE "single": claim (long-poll) up to 10 jobs, complete each with its own request.
// MODE "batch":  finish-and-fetch-next with /ack (complete the batch, claim the next).
// Prints "W <id>" when it starts a job and "D <id>" when the server confirmed it done.
// A job whose payload has {"fail": true} on its first attempt is failed (retried).
"use strict";

const [base, token, queue, workerId, mode, workMs] = process.argv.slice(2);
const api = `${base}/v1/queues/${encodeURIComponent(queue)}`;
const headers = { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function post(path, body) {
  for (let attempt = 0; ; attempt++) {
    let response;
    try {
      response = await fetch(api + path, { method: "POST", headers, body: JSON.stringify(body) });
    } catch (err) {               // the server restarts: try again, backing off
      await sleep(Math.min(1000, 50 * 2 ** attempt));
      continue;
    }
    const data = await response.json();
    if (response.status === 503) { await sleep(200); continue; }
    return [response.status, data];
  }
}

async function work(job) {
  process.stdout.write(`W ${job.id}\n`);
  await sleep(Number(workMs));
  if (job.payload && job.payload.fail && job.attempt === 1) return { error: "Error: asked to fail once" };
  return { result: { by: workerId, n: job.payload && job.payload.n } };
}

async function single() {
  for (;;) {
    const [status, data] = await post("/claim", { worker_id: workerId, limit: 10, wait: 1 });
    if (status !== 200) throw new Error(`claim: ${status} ${JSON.stringify(data)}`);
    for (const job of data.jobs) {
      const outcome = await work(job);
      const [verb, body] = outcome.error
        ? ["fail", { token: job.token, error: outcome.error, delay: 0, worker_id: workerId }]
        : ["complete", { token: job.token, result: outcome.result, worker_id: workerId }];
      const [s, reply] = await post(`/jobs/${encodeURIComponent(job.id)}/${verb}`, body);
      if (s === 200 && reply.state === "done") process.stdout.write(`D ${job.id}\n`);
      else if (s !== 200 && s !== 409) throw new Error(`${verb}: ${s} ${JSON.stringify(reply)}`);
    }
  }
}

async function batch() {
  let held = [];
  for (;;) {
    const complete = [], fail = [];
    for (const job of held) {
      const outcome = await work(job);
      if (outcome.error) fail.push({ id: job.id, token: job.token, error: outcome.error, delay: 0 });
      else complete.push({ id: job.id, token: job.token, result: outcome.result });
    }
    const [status, data] = await post("/ack", {
      complete, fail, claim: { worker_id: workerId, limit: 10, wait: 1 } });
    if (status !== 200) throw new Error(`ack: ${status} ${JSON.stringify(data)}`);
    for (const r of data.results) if (r.ok && r.state === "done") process.stdout.write(`D ${r.id}\n`);
    held = data.jobs;
  }
}

(mode === "batch" ? batch() : single()).catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
