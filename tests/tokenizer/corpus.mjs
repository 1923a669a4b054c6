// Deterministic test corpus for the tokenizer oracle tests and the benchmark: code, prose in
// several scripts, emoji/ZWJ/flags, digit and whitespace runs, special-token text inside user text,
// odd-case contractions, very long words and combining characters. Same seed -> same strings.
// Lone surrogates, U+0085, U+180E and U+FEFF are never produced (JS \s, PCRE2 \s and HF's regex
// engine disagree on the last three; JS strings can hold the first, UTF-8 cannot).

export function mulberry32(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = {
  english: "the quick brown fox jumps over lazy dog tokenizer model inference server stream request hello world attention cache layer weight quantized kernel memory bandwidth throughput latency".split(" "),
  latin: "café naïve façade résumé über straße señor jalapeño crème brûlée smørrebrød Ærøskøbing Łódź żółć Dvořák Ελλάδα São Paulo coração ação Škoda".split(" "),
  cyrillic: "привет мир как дела токенизатор модель Москва Ёлка съешь ещё этих мягких французских булок".split(" "),
  greek: "καλημέρα κόσμε γειά σου Αθήνα φιλοσοφία λόγος ψυχή ΑΒΓΔ".split(" "),
  arabic: "مرحبا بالعالم كيف حالك اللغة العربية الذكاء الاصطناعي سلام".split(" "),
  hindi: "नमस्ते दुनिया भाषा मॉडल हिन्दी क्षत्रिय विद्यालय".split(" "),
  thai: "สวัสดี ภาษาไทย โลก คอมพิวเตอร์ ขอบคุณครับ".split(" "),
  cjk: "你好 世界 我们 今天 天气 很好 机器学习 東京 日本語 ひらがな カタカナ テスト 漢字 中华人民共和国".split(" "),
  korean: "안녕하세요 세계 한국어 토크나이저 감사합니다 서울".split(" "),
  vietnamese: "Việt Nam Tiếng Việt người Hà Nội được chữ".split(" "),
  hebrew: "שלום עולם עברית".split(" "),
};

const EMOJI = ["😀", "🚀", "❤️", "👍🏽", "🇫🇷", "🇯🇵", "🇺🇸", "👨‍👩‍👧‍👦", "🧑‍💻", "🏳️‍🌈", "👩🏿‍🔬", "🤖", "🔥", "✅", "⭐", "🙏🏻", "🫠", "🐈‍⬛", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "©", "™", "§"];

const SPECIAL = [
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
  "<|start_header_id|>", "<|end_header_id|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
  "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>", "<|startoftext|>",
  "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<|im_start", "im_end|>",
  "<|", "|>", "<||>", "<|reserved_special_token_5|>", "<|fim_prefix|>",
];

const CONTRACTIONS = ["DON'T", "it'S", "I'M", "we'Re", "they'VE", "she'LL", "he'D", "can't", "won't", "y'all", "'s", "'t", "O'Neil", "rock'n'roll", "it's", "IT'S", "You'Ll", "'ll've"];

const CODE = [
  "def f(x):\n    return x ** 2 + 1\n",
  "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
  "const x = await fetch(`/v1/chat?id=${id}`);\r\n",
  '{"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 128}',
  "#include <vector>\nstd::vector<int32_t> ids{1, 2, 3};\n",
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
  "    if (a != b && c <= d || !e) { return -1; }  // TODO: fix\n",
  "x = [i for i in range(10) if i % 2 == 0]\nprint(f\"{x!r:>10}\")",
  "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
  "<div class=\"a\">&nbsp;&lt;tag&gt;</div>",
  "$ ls -la /usr/lib/*.so | grep -v '^d' > /tmp/out.txt 2>&1",
  "a+=1;b-=2;c*=3;d/=4;e%=5;f<<=6;g>>=7;h&=8;i|=9;j^=10;",
  "0x1F 0b1010 1e-9 3.14159 -42 +7 1_000_000 12,345.67",
  "@decorator\nclass Foo(Bar, metaclass=Meta):\n    __slots__ = ('a', 'b')\n",
];

const COMBINING = ["e\u0301", "a\u0300", "o\u0308", "n\u0303", "c\u0327", "A\u030A", "\u1100\u1161\u11A8", "\u1112\u1161\u11AB",
  "u\u031B\u0301", "e\u0302\u0323", "\u0915\u094D\u0937", "Z\u0335\u0321a\u0336\u0322l\u0334g\u0337o", "\u0041\u030A\u0301",
  "i\u0307", "\u03B1\u0301", "\u0438\u0306"];

function pick(rng, arr) { return arr[Math.floor(rng() * arr.length)]; }
function int(rng, lo, hi) { return lo + Math.floor(rng() * (hi - lo + 1)); }

function prose(rng, script, n) {
  const out = [];
  for (let i = 0; i < n; ++i) {
    let w = pick(rng, WORDS[script]);
    const r = rng();
    if (r < 0.1) w = w.toUpperCase();
    else if (r < 0.2) w = w[0].toUpperCase() + w.slice(1);
    out.push(w);
    if (rng() < 0.15) out.push(pick(rng, [",", ".", "!", "?", ";", ":", "…", "—", "、", "。", "，", "！"]));
  }
  return out.join(rng() < 0.8 ? " " : pick(rng, ["", "  ", "\u3000", "\u00A0"]));
}

function whitespace(rng) {
  return pick(rng, [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\t\t", "    \n  ", "\u00A0", "\u2003", "\u3000", "\r", "\v", "\f", " \t \n"]);
}

function digits(rng, n) {
  let s = "";
  for (let i = 0; i < n; ++i) s += String(int(rng, 0, 9));
  return s;
}

function unicode_digits(rng) {
  return pick(rng, ["١٢٣٤٥", "०१२३४", "１２３", "Ⅻ", "½", "²³", "๓๔๕", "𝟙𝟚𝟛"]);
}

function fragment(rng) {
  const r = rng();
  if (r < 0.3) return prose(rng, pick(rng, Object.keys(WORDS)), int(rng, 1, 12));
  if (r < 0.4) return pick(rng, CODE);
  if (r < 0.5) return pick(rng, EMOJI) + (rng() < 0.5 ? pick(rng, EMOJI) : "");
  if (r < 0.58) return digits(rng, int(rng, 1, 40));
  if (r < 0.64) return whitespace(rng).repeat(int(rng, 1, 4));
  if (r < 0.72) return pick(rng, SPECIAL);
  if (r < 0.8) return pick(rng, CONTRACTIONS);
  if (r < 0.88) return pick(rng, COMBINING);
  if (r < 0.92) return unicode_digits(rng);
  if (r < 0.96) return pick(rng, ["...", "!!!", "?!", "---", "***", "((", "))", "[[x]]", "{}", "``", "''", "\"\"", "$$", "%%", "&&", "||", "::", "->", "=>", "#", "@", "~", "^"]);
  return String.fromCodePoint(pick(rng, [0x00e9, 0x00df, 0x0153, 0x2603, 0x263a, 0x20ac, 0x00a3, 0x00a5, 0x2122, 0x0394, 0x05d0, 0x0e01, 0x3042, 0x30a2, 0x4e00, 0xac00, 0x1f600, 0x1f4a9, 0x10348, 0x2070e, 0x0001, 0x007f, 0x00ad, 0x200b, 0x200d, 0x2028, 0x00a0]));
}

// Long, pathological inputs (cheap to generate, exercise linear-time splitting and bounded BPE).
function long_case(rng, i) {
  switch (i % 8) {
    case 0: return " ".repeat(int(rng, 50, 3000)) + "x";
    case 1: return "a".repeat(int(rng, 100, 5000));
    case 2: return digits(rng, int(rng, 100, 2000));
    case 3: { let s = ""; const syl = ["ka", "lo", "mi", "zu", "re", "te", "xa", "qu"]; const n = int(rng, 50, 800); for (let k = 0; k < n; ++k) s += pick(rng, syl); return s; }
    case 4: return "\n".repeat(int(rng, 10, 500)) + "end" + " \t".repeat(int(rng, 10, 200));
    case 5: return pick(rng, EMOJI).repeat(int(rng, 20, 300));
    case 6: return "你好世界".repeat(int(rng, 20, 300));
    default: return prose(rng, "english", 200).replace(/ /g, "");
  }
}

export function make_corpus(seed, n) {
  const rng = mulberry32(seed);
  const out = [];
  // Fixed edge cases first.
  out.push("", " ", "  ", "a", "Hello world", "Hello, world!", "a   b", "  leading", "trailing  ", "\n", "\r\n", "\t",
    "12345", "1234567", "Việt", " Việt", "DON'T stop", "it'S here", "e\u0301", "\u00e9",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "text<|endoftext|>more", "<think>\nok\n</think>\n\nanswer");
  let k = 0;
  while (out.length < n) {
    const r = rng();
    if (r < 0.03) {
      out.push(long_case(rng, k++));
      continue;
    }
    const parts = [];
    const m = int(rng, 1, r < 0.5 ? 4 : 12);
    for (let i = 0; i < m; ++i) {
      parts.push(fragment(rng));
      if (rng() < 0.6) parts.push(rng() < 0.8 ? " " : whitespace(rng));
    }
    out.push(parts.join(""));
  }
  return out;
}
