// A load test of nibble serve through the official openai npm client:
//   node load_client.mjs NODE_MODULES BASE_URL MODEL MAX_MODEL_LEN [SECONDS]
// Each round runs 16 streaming clients at once (chat and completions, include_usage, different
// max_tokens, stop strings, greedy and seeded sampling) together with malformed requests (bad JSON,
// wrong types, a prompt longer than the context, huge max_tokens, invalid UTF-8 bytes, an unknown
// model, unsupported fields) and clients that disconnect mid-stream or while queued (at least 2
// aborted a round). Every streamed text, finish_reason and usage must equal the same request made
// alone, every bad request must get its 4xx with an OpenAI error body naming the field. Rounds repeat until SECONDS have passed (one
// round when 0 or absent). Afterwards the server must still serve and /metrics must show no running
// or waiting request. Prints "ok" and a summary line; exits non-zero on the first failure.
import net from "node:net";
import path from "node:path";
import { createRequire } from "node:module";

const [modules, baseURL, model, maxModelLenArg, secondsArg] = process.argv.slice(2);
const maxModelLen = Number(maxModelLenArg);
const seconds = Number(secondsArg ?? 0);
const require = createRequire(path.join(modules, "noop.js"));
const OpenAI = require("openai").default ?? require("openai");
const client = new OpenAI({ baseURL, apiKey: "none", maxRetries: 0, timeout: 60000 });
const origin = new URL(baseURL).origin;
const counts = { streams: 0, bad: 0, disconnects: 0, rounds: 0 };

function check(cond, what) {
    if (!cond) throw new Error("check failed: " + what);
}

// --- streaming clients --------------------------------------------------------------------------

const codePrompts = ["def fibonacci(n):", "import os\n\ndef main():", "class Stack:\n    def __init__(self):",
                     "for i in range(10):", "def parse(line):\n    return", "x = [i * i for i in"];

// The i-th streaming request of a round (the same in every round).
function streamRequest(i) {
    const chat = i % 2 === 1;
    const body = { model, max_tokens: 6 + 5 * i, stream: true, stream_options: { include_usage: true } };
    if (i % 3 === 0) body.temperature = 0;
    else Object.assign(body, { temperature: 0.8, top_p: 0.95, seed: 1000 + i });
    if (i % 4 === 1) body.stop = ["\n\n", "return"];
    if (i % 5 === 2) body.ignore_eos = true;
    const text = codePrompts[i % codePrompts.length];
    if (chat) body.messages = [{ role: "user", content: `Write Python ${i}: ${text}` }];
    else body.prompt = text;
    return body;
}

// Streams one request; returns {text, finish, usage, role}.
async function runStream(body) {
    const chat = "messages" in body;
    const stream = chat ? await client.chat.completions.create(body) : await client.completions.create(body);
    let text = "", finish = null, usage = null, role = null, afterUsage = 0;
    for await (const chunk of stream) {
        if (usage) ++afterUsage;
        if (chunk.usage) {
            check(chunk.choices.length === 0, "usage chunk has no choices");
            usage = chunk.usage;
        }
        for (const c of chunk.choices) {
            check(finish === null, "no chunk after finish_reason but the usage one");
            if (chat) {
                if (c.delta.role) role = c.delta.role;
                if (c.delta.content) text += c.delta.content;
            } else {
                text += c.text;
            }
            if (c.finish_reason) finish = c.finish_reason;
        }
    }
    check(afterUsage === 0, "usage is the last chunk");
    check(finish === "stop" || finish === "length", "finish_reason " + finish);
    check(usage && usage.completion_tokens >= 1 && usage.completion_tokens <= body.max_tokens,
          "usage " + JSON.stringify(usage));
    check(usage.total_tokens === usage.prompt_tokens + usage.completion_tokens, "usage total");
    if (body.ignore_eos && !body.stop) check(usage.completion_tokens === body.max_tokens, "ignore_eos length");
    if (finish === "length") check(usage.completion_tokens === body.max_tokens, "length at max_tokens");
    if (chat) check(role === "assistant", "chat role");
    for (const s of body.stop ?? []) check(!text.includes(s), `stop string ${JSON.stringify(s)} in output`);
    return { text, finish, usage };
}

// --- malformed requests -------------------------------------------------------------------------

const longPrompt = "x = 1\n".repeat(maxModelLen);  // well over max_model_len tokens
const bad = [
    // [path, raw body (string or Buffer), status, param (null: none), part of the message]
    ["/v1/completions", '{"prompt": "x", ', 400, null, "not valid JSON"],
    ["/v1/chat/completions", "", 400, null, "not valid JSON"],
    ["/v1/completions", "[1, 2]", 400, null, "JSON object"],
    ["/v1/completions", '{"prompt": 5}', 400, "prompt", "prompt"],
    ["/v1/completions", '{"prompt": "x", "max_tokens": "ten"}', 400, "max_tokens", "integer"],
    ["/v1/completions", '{"prompt": "x", "temperature": "hot"}', 400, "temperature", "number"],
    ["/v1/chat/completions", '{"messages": "hi"}', 400, "messages", "messages"],
    ["/v1/chat/completions", '{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream",
     "boolean"],
    ["/v1/completions", JSON.stringify({ prompt: longPrompt }), 400, "prompt", "maximum context length"],
    ["/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: longPrompt }], stream: true }),
     400, "messages", "maximum context length"],
    ["/v1/completions", '{"prompt": "x", "max_tokens": 1000000000}', 400, "max_tokens", "maximum context length"],
    ["/v1/completions", '{"prompt": "x", "max_tokens": 9223372036854775807}', 400, "max_tokens",
     "maximum context length"],
    ["/v1/completions", '{"prompt": "x", "max_tokens": 1e30}', 400, "max_tokens", "max_tokens"],
    ["/v1/completions", '{"prompt": "x", "max_tokens": -5}', 400, "max_tokens", "max_tokens"],
    ["/v1/completions", Buffer.from([...Buffer.from('{"prompt": "ab'), 0xff, 0xfe, 0xc3, ...Buffer.from('"}')]),
     400, null, "UTF-8"],
    ["/v1/completions", `{"prompt": "x", "model": "no-such-model"}`, 404, "model", "does not exist"],
    ["/v1/chat/completions",
     '{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}',
     400, "tools", "not supported"],
    ["/v1/chat/completions",
     '{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}', 400,
     "response_format", "not supported"],
    ["/v1/completions", '{"prompt": "x", "n": 3}', 400, "n", "n = 1"],
];

async function runBad([p, body, status, param, part]) {
    const r = await fetch(origin + p, { method: "POST", headers: { "Content-Type": "application/json" }, body });
    const raw = await r.text();
    const what = `${p} ${String(body).slice(0, 80)} -> ${r.status} ${raw.slice(0, 300)}`;
    check(r.status === status, "status: " + what);
    let j = null;
    try {
        j = JSON.parse(raw);
    } catch {
        check(false, "error body is JSON: " + what);
    }
    const e = j.error;
    check(e && typeof e.message === "string" && typeof e.type === "string", "error envelope: " + what);
    check(e.code === status, "error.code: " + what);
    check(e.param === param, "error.param: " + what);
    check(e.message.includes(part), `message names ${JSON.stringify(part)}: ` + what);
}

// The same kind of failure through the SDK: it must raise APIError with the server's message.
async function runBadSdk() {
    const cases = [
        [() => client.chat.completions.create({ model: "other", messages: [{ role: "user", content: "x" }] }), 404],
        [() => client.completions.create({ model, prompt: "x", max_tokens: 10 ** 9, stream: true }), 400],
        [() => client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }],
                                                tools: [{ type: "function", function: { name: "f" } }] }), 400],
    ];
    for (const [call, status] of cases) {
        let err = null;
        try {
            await call();
        } catch (e) {
            err = e;
        }
        check(err instanceof OpenAI.APIError && err.status === status, `SDK error ${err} (want ${status})`);
        check(typeof err.error?.message === "string" && err.error.message.length > 0, "SDK error message");
    }
}

// --- clients that go away -----------------------------------------------------------------------

// Reads a few chunks of a long stream through the SDK, then aborts it. The SDK can lag the tiny
// model by more than the whole generation, so the server may already have finished it.
async function abortThroughSdk(i) {
    const body = { model, prompt: "def long_function():", max_tokens: maxModelLen - 32, ignore_eos: true,
                   stream: true };
    const stream = await client.completions.create(body);
    let n = 0;
    try {
        for await (const chunk of stream) {
            if (++n === 2 + (i % 3)) stream.controller.abort();
        }
    } catch (e) {
        check(e instanceof OpenAI.APIUserAbortError || e.name === "AbortError", "abort error " + e);
    }
    check(n >= 2, "got chunks before the abort");
}

// Sends a long streaming request on a raw socket and closes it: after the first SSE event
// (mid-stream) or 20 ms after sending (queued or in prefill). The server must abort it.
function disconnectRaw(midStream) {
    return new Promise((resolve, reject) => {
        const url = new URL(origin);
        const body = JSON.stringify({ model, prompt: "import sys", max_tokens: maxModelLen - 32, ignore_eos: true,
                                      stream: true });
        let got = "";
        const s = net.connect(Number(url.port), url.hostname, () => {
            s.write(`POST /v1/completions HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
                    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
            if (!midStream) setTimeout(() => s.destroy(), 20);
        });
        s.on("data", (d) => {
            got += d.toString("latin1");
            if (midStream && got.includes("data: ")) {
                check(!got.includes("[DONE]"), "the stream is still running when we leave");
                s.destroy();
            }
        });
        s.on("close", resolve);
        s.on("error", reject);
    });
}

// --- the rounds ---------------------------------------------------------------------------------

async function metrics() {
    const r = await fetch(origin + "/metrics");
    check(r.status === 200, "/metrics status");
    const t = await r.text();
    const get = (name) => {
        const m = t.match(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m"));
        check(m, name + " in /metrics");
        return Number(m[1]);
    };
    const abort = t.match(/^vllm:request_success_total\{[^}]*finished_reason="abort"\} (\S+)$/m);
    return { running: get("vllm:num_requests_running"), waiting: get("vllm:num_requests_waiting"),
             aborted: abort ? Number(abort[1]) : 0 };
}

const nStreams = 16;
const alone = [];
for (let i = 0; i < nStreams; ++i) alone.push(await runStream(streamRequest(i)));

async function round() {
    const jobs = [];
    for (let i = 0; i < nStreams; ++i)
        jobs.push(runStream(streamRequest(i)).then((got) => {
            const want = alone[i];
            check(got.text === want.text && got.finish === want.finish,
                  `stream ${i} under load ${JSON.stringify(got)} vs alone ${JSON.stringify(want)}`);
            check(JSON.stringify(got.usage) === JSON.stringify(want.usage), `stream ${i} usage`);
            ++counts.streams;
        }));
    for (const b of bad) jobs.push(runBad(b).then(() => ++counts.bad));
    jobs.push(runBadSdk().then(() => (counts.bad += 3)));
    for (let i = 0; i < 2; ++i) jobs.push(abortThroughSdk(i).then(() => ++counts.disconnects));
    for (const mid of [true, false]) jobs.push(disconnectRaw(mid).then(() => ++counts.disconnects));
    await Promise.all(jobs);
    ++counts.rounds;
}

const start = Date.now();
do await round();
while ((Date.now() - start) / 1000 < seconds);

// Still serving, the same answer as alone, and nothing left in the engine (the aborted streams freed
// their sequences at the next step).
const again = await runStream(streamRequest(0));
check(again.text === alone[0].text, "served after the load");
let m = await metrics();
for (let t = 0; t < 50 && (m.running !== 0 || m.waiting !== 0); ++t) {
    await new Promise((r) => setTimeout(r, 100));
    m = await metrics();
}
check(m.running === 0 && m.waiting === 0, "requests left in the engine: " + JSON.stringify(m));
check(m.aborted >= 2 * counts.rounds, "aborted requests counted: " + JSON.stringify(m));
console.log(`load: ${JSON.stringify(counts)} in ${((Date.now() - start) / 1000).toFixed(1)} s, metrics ${JSON.stringify(m)}`);
console.log("ok");
