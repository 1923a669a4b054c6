// JS side of the tokenizer benchmark: writes the benchmark text (a JSON array of strings, a few MB,
// deterministic) and reports transformers.js (@lenml/tokenizers) encode speed on it.
//   node tokenizer_bench.mjs NODE_MODULES_DIR NAME OUT_TEXT.json [MB]
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { make_corpus } from "../tests/tokenizer/corpus.mjs";

const [nodeModules, name, outPath, mbArg] = process.argv.slice(2);
const target = Number(mbArg ?? 4) * 1e6;
const require = createRequire(path.join(path.resolve(nodeModules), "noop.js"));
const tok = require(`@lenml/tokenizer-${name}`).fromPreTrained();

const texts = [];
let n_bytes = 0;
for (let seed = 7; n_bytes < target; ++seed) {
  for (const t of make_corpus(seed, 500)) {
    texts.push(t);
    n_bytes += Buffer.byteLength(t, "utf8");
  }
}
fs.writeFileSync(outPath, JSON.stringify(texts));

for (let pass = 1; pass <= 2; ++pass) {
  let n_tokens = 0;
  const t0 = process.hrtime.bigint();
  for (const t of texts) n_tokens += tok.encode(t, { add_special_tokens: false }).length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`js      ${name} pass ${pass}: ${(n_bytes / 1e6).toFixed(2)} MB, ${n_tokens} tokens, ${s.toFixed(2)} s, ${(n_bytes / 1e6 / s).toFixed(2)} MB/s`);
}
