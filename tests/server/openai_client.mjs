// Drives nibble serve with the official openai npm client: node openai_client.mjs NODE_MODULES BASE_URL.
// Prints "ok" when every check passed; exits non-zero with the failure otherwise.
import path from "node:path";
import { createRequire } from "node:module";

const [modules, baseURL] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const OpenAI = require("openai").default ?? require("openai");

function check(cond, what) {
    if (!cond) throw new Error("check failed: " + what);
}

const client = new OpenAI({ baseURL, apiKey: "k123", maxRetries: 0, timeout: 60000 });

const models = await client.models.list();
check(models.data[0].id === "tiny", "models.list id: " + JSON.stringify(models.data));

const messages = [{ role: "user", content: "Say something." }];
const chat = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 0 });
const chatText = chat.choices[0].message.content;
check(typeof chatText === "string" && chatText.length > 0, "chat content");
check(chat.usage.completion_tokens > 0, "chat usage");

const stream = await client.chat.completions.create({
    model: "tiny", messages, max_tokens: 12, temperature: 0, stream: true,
    stream_options: { include_usage: true },
});
let streamed = "", role = null, usage = null, finish = null;
for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
        if (c.delta.role) role = c.delta.role;
        if (c.delta.content) streamed += c.delta.content;
        if (c.finish_reason) finish = c.finish_reason;
    }
}
check(role === "assistant", "stream role");
check(streamed === chatText, `streamed chat ${JSON.stringify(streamed)} vs ${JSON.stringify(chatText)}`);
check(usage && usage.completion_tokens === chat.usage.completion_tokens, "stream usage");
check(finish === chat.choices[0].finish_reason, "stream finish_reason");

const comp = await client.completions.create({ model: "tiny", prompt: "def fibonacci(n):", max_tokens: 10, temperature: 0 });
const cstream = await client.completions.create({
    model: "tiny", prompt: "def fibonacci(n):", max_tokens: 10, temperature: 0, stream: true,
});
let ctext = "";
for await (const chunk of cstream) for (const c of chunk.choices) ctext += c.text;
check(ctext === comp.choices[0].text, "streamed completion");

let status = 0;
try {
    await client.chat.completions.create({ model: "other", messages });
} catch (e) {
    status = e.status;
}
check(status === 404, "unknown model status " + status);
console.log("ok");
