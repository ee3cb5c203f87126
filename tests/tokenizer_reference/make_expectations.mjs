// Writes <name>.json beside this script for every folder of ../shared/tokenizers
// (relative to the repository root) that has tokenizer.json + tokenizer_config.json:
// the test strings of strings.json (and a seeded random section built from its
// fragments) with the ids and texts that Hugging Face's transformers.js gives.
// The C++ test engine/tokenizer/hf_reference_test.cc reads these files.
//
//   cd tests/tokenizer_reference && npm ci --ignore-scripts && node make_expectations.mjs
//
// Optional argument: the tokenizers folder (default ../../../shared/tokenizers).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { AutoTokenizer, PreTrainedTokenizer } from '@huggingface/transformers';

const here = path.dirname(fileURLToPath(import.meta.url));
const tokenizersDir = path.resolve(process.argv[2] ?? path.join(here, '../../../shared/tokenizers'));
const expectedVersion = '3.8.1';

// The transformers.js that is actually loaded (not just what package.json asks for).
const installed = JSON.parse(fs.readFileSync(
  path.join(here, 'node_modules/@huggingface/transformers/package.json'), 'utf8')).version;
if (installed !== expectedVersion) {
  throw new Error(`@huggingface/transformers ${installed} is installed, ${expectedVersion} expected ` +
                  '(run npm ci --ignore-scripts)');
}

// mulberry32: a small seeded generator, so the random section is the same on
// every machine and Node version.
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function testStrings() {
  const corpus = JSON.parse(fs.readFileSync(path.join(here, 'strings.json'), 'utf8'));
  const strings = [];
  const seen = new Set();
  const add = (s) => {
    if (!seen.has(s)) {
      seen.add(s);
      strings.push(s);
    }
  };
  for (const section of Object.values(corpus.sections)) section.forEach(add);
  const { seed, count, max_fragments: maxFragments } = corpus.random;
  const next = mulberry32(seed);
  const pick = (n) => Math.floor(next() * n);
  for (let i = 0; i < count; ++i) {
    let s = '';
    for (let k = 1 + pick(maxFragments); k > 0; --k) s += corpus.fragments[pick(corpus.fragments.length)];
    add(s);
  }
  return strings;
}

// As AutoTokenizer.from_pretrained: tokenizer_config.tokenizer_class without
// "Fast", looked up among transformers.js's tokenizer classes, else the base class.
function loadTokenizer(dir) {
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  const className = tokenizerConfig.tokenizer_class?.replace(/Fast$/, '') ?? 'PreTrainedTokenizer';
  const cls = AutoTokenizer.TOKENIZER_CLASS_MAPPING[className] ?? PreTrainedTokenizer;
  // Python's split_special_tokens=True (transformers.js has no such option):
  // special tokens are not cut out of the text, the other added tokens are.
  const splitJSON = {
    ...tokenizerJSON,
    added_tokens: tokenizerJSON.added_tokens.filter((t) => !t.special),
  };
  return {
    tokenizer: new cls(tokenizerJSON, tokenizerConfig),
    splitTokenizer: new cls(splitJSON, tokenizerConfig),
    tokenizerConfig,
    cls,
  };
}

// Random id sequences (a fixed-seed LCG): byte tokens, special tokens and
// pieces from anywhere in the vocabulary, in any order, so that decoding is
// checked on sequences no text encodes to (cut UTF-8, specials mid-word).
function randomIdSequences(vocabSize, count) {
  let seed = 20261206;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const sequences = [];
  for (let i = 0; i < count; ++i) {
    const length = 1 + Math.floor(next() * 10);
    const ids = [];
    for (let k = 0; k < length; ++k) {
      ids.push(next() < 0.3 ? Math.floor(next() * 300) : Math.floor(next() * vocabSize));
    }
    sequences.push(ids);
  }
  return sequences;
}

const strings = testStrings();
const names = fs.readdirSync(tokenizersDir).filter(
  (name) => fs.existsSync(path.join(tokenizersDir, name, 'tokenizer.json')) &&
            fs.existsSync(path.join(tokenizersDir, name, 'tokenizer_config.json'))).sort();
if (names.length === 0) throw new Error(`no tokenizer folders in ${tokenizersDir}`);

for (const name of names) {
  const { tokenizer, splitTokenizer, tokenizerConfig, cls } = loadTokenizer(path.join(tokenizersDir, name));
  // transformers.js refuses to decode no ids; their text is "".
  const decode = (ids, skip) => (ids.length === 0 ? '' : tokenizer.decode(
    ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }));
  const lines = strings.map((text) => {
    const ids = tokenizer.encode(text, { add_special_tokens: false });
    const entry = {
      text,
      ids,
      ids_special: tokenizer.encode(text),
      ids_split: splitTokenizer.encode(text, { add_special_tokens: false }),
      decoded: decode(ids, false),
      decoded_skip: decode(ids, true),
    };
    return JSON.stringify(entry);
  });
  const decodeLines = randomIdSequences(tokenizer.model.vocab.length, 200).map((ids) =>
    JSON.stringify({ ids, decoded: decode(ids, false), decoded_skip: decode(ids, true) }));
  const header = {
    generated_by: 'tests/tokenizer_reference/make_expectations.mjs (generated, do not edit)',
    transformers_js: installed,
    tokenizer: name,
    tokenizer_class: tokenizerConfig.tokenizer_class ?? null,
    js_class: cls.name,
    add_bos_token: tokenizerConfig.add_bos_token ?? null,
    add_eos_token: tokenizerConfig.add_eos_token ?? null,
    bos_token_id: tokenizer.bos_token_id ?? null,
    eos_token_id: tokenizer.eos_token_id ?? null,
  };
  // One case per line, so that a regenerated file diffs readably.
  let out = JSON.stringify(header).slice(0, -1) + ',\n"cases": [\n' + lines.join(',\n') +
      '\n],\n"decode_cases": [\n' + decodeLines.join(',\n') + '\n]}\n';
  const file = path.join(here, `${name}.json`);
  fs.writeFileSync(file, out);
  console.log(`${name}: ${cls.name}, ${strings.length} strings, ${(out.length / 1e6).toFixed(2)} MB -> ${file}`);
}
