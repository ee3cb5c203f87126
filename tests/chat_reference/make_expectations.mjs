// Renders every chat template of this folder (and of ../shared/tokenizers) on
// every conversation of conversations.json with Hugging Face's own Jinja
// renderer, @huggingface/jinja (the version pinned in package.json), the way
// transformers.js's apply_chat_template does, and writes expectations.json.
// engine/chat/hf_chat_reference_test.cc compares packd's renderer with it.
// See README.md. Usage: node make_expectations.mjs [shared-dir]
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Environment, Template } from "@huggingface/jinja";

const JINJA_VERSION = "0.5.13";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHARED = path.resolve(process.argv[2] ?? path.join(HERE, "../../../shared"));

const installed = JSON.parse(
  fs.readFileSync(path.join(HERE, "node_modules/@huggingface/jinja/package.json"), "utf8"),
).version;
if (installed !== JINJA_VERSION) {
  throw new Error(`@huggingface/jinja ${installed} is installed; this script is for ${JINJA_VERSION} (npm ci)`);
}

// The fixed "now" that strftime_now returns (UTC). The C++ test passes the same
// instant to ChatTemplates::SetNowForTesting.
const NOW = "2026-07-26T12:00:00";
const NOW_DATE = new Date(NOW + "Z");

// strftime_now as @huggingface/jinja implements it (its formats: %Y %m %d %b
// %B %H %M %%), but at NOW, in UTC and with English month names, so that the
// expectations do not depend on the clock, time zone or locale of the machine
// that made them.
function strftimeNowFixed(format) {
  const d = NOW_DATE;
  const pad2 = (n) => (n < 10 ? "0" + n : String(n));
  const long = new Intl.DateTimeFormat("en-US", { month: "long", timeZone: "UTC" }).format(d);
  const short = new Intl.DateTimeFormat("en-US", { month: "short", timeZone: "UTC" }).format(d);
  return format.replace(/%[YmdbBHM%]/g, (token) => {
    switch (token) {
      case "%Y": return String(d.getUTCFullYear());
      case "%m": return pad2(d.getUTCMonth() + 1);
      case "%d": return pad2(d.getUTCDate());
      case "%b": return short;
      case "%B": return long;
      case "%H": return pad2(d.getUTCHours());
      case "%M": return pad2(d.getUTCMinutes());
      case "%%": return "%";
    }
    return token;
  });
}

// raise_exception as @huggingface/jinja's (throws Error(message)), but with a
// class of its own, so that a template's deliberate refusal is told apart
// from a failure of the renderer.
class RaisedByTemplate extends Error {}
function raiseException(message) {
  throw new RaisedByTemplate(message);
}

// Template.render() declares its globals (setupGlobals) through
// Environment.set and refuses to redeclare them from the context, so the two
// replacements above go in there, each under its own name; everything else
// is the library's own.
const librarySet = Environment.prototype.set;
Environment.prototype.set = function (name, value) {
  if (name === "strftime_now") value = strftimeNowFixed;
  if (name === "raise_exception") value = raiseException;
  return librarySet.call(this, name, value);
};

// transformers.js's SPECIAL_TOKEN_ATTRIBUTES and getToken(): a string, or an
// AddedToken object's content; unset or empty tokens are left out of the
// context.
const SPECIAL_TOKEN_ATTRIBUTES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];
function specialTokensOf(config) {
  const tokens = {};
  for (const key of SPECIAL_TOKEN_ATTRIBUTES) {
    const item = config[key];
    if (!item) continue;
    const value = typeof item === "object" ? item.content : item;
    if (value) tokens[key] = value;
  }
  return tokens;
}

// The templates. `shared`: a tokenizer_config.json under ../shared, its
// "chat_template" (a string, or a list of {name, template}: `template_name`
// picks one) and its special tokens. `file`: a template of this folder, with
// the special tokens of the same model's tokenizer_config.json (README.md
// says where each comes from). `files`: a list of named templates (what a
// tokenizer_config.json's "chat_template" list holds), each a file of this
// folder; `named` says which conversations each renders (`only`: "plain",
// "tools" or "documents") and each case names its template (`template_name`).
// `tools`: the template renders tool calls. `thinking`: <think> handling.
// `variants`: extra contexts, each rendered on every conversation besides
// the plain one. `context`: extra context of every case of the template.
const TEMPLATES = [
  { name: "llama-3", shared: "tokenizers/llama3-hf/tokenizer_config.json" },
  { name: "llama-3.1", file: "templates/llama-3.1.jinja", tools: true,
    special_tokens: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
    variants: [{ date_string: "05 Mar 2025" }, { tools_in_user_message: false }] },
  { name: "llama-3.2", file: "templates/llama-3.2.jinja", tools: true,
    special_tokens: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
    variants: [{ date_string: "05 Mar 2025" }, { tools_in_user_message: false }] },
  { name: "llama-3.3", file: "templates/llama-3.3.jinja", tools: true,
    special_tokens: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
    variants: [{ date_string: "05 Mar 2025" }, { tools_in_user_message: false }] },
  { name: "qwen2.5", file: "templates/qwen2.5.jinja", tools: true,
    special_tokens: { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" } },
  { name: "qwen3", shared: "tokenizers/qwen3/tokenizer_config.json", tools: true, thinking: true,
    variants: [{ enable_thinking: false }] },
  { name: "mistral-nemo", file: "templates/mistral-nemo.jinja", tools: true,
    special_tokens: { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" } },
  { name: "mistral-7b-instruct-v0.3", file: "templates/mistral-7b-instruct-v0.3.jinja", tools: true,
    special_tokens: { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" } },
  { name: "command-r-plus",
    files: { default: "templates/command-r-plus-default.jinja", tool_use: "templates/command-r-plus-tool_use.jinja",
             rag: "templates/command-r-plus-rag.jinja" },
    named: [{ name: "default", only: "plain" }, { name: "tool_use", only: "tools" },
            { name: "rag", only: "documents", variants: [{ citation_mode: "accurate" }] }],
    special_tokens: { bos_token: "<BOS_TOKEN>", eos_token: "<|END_OF_TURN_TOKEN|>", pad_token: "<PAD>" } },
  { name: "gemma-2", file: "templates/gemma-2.jinja",
    special_tokens: { bos_token: "<bos>", eos_token: "<eos>", unk_token: "<unk>", pad_token: "<pad>" } },
  { name: "gemma-3", shared: "tokenizers/gemma3/tokenizer_config.json" },
  { name: "deepseek-v3", shared: "tokenizers/deepseek-v3/tokenizer_config.json", tools: true },
  { name: "deepseek-r1-distill-qwen", file: "templates/deepseek-r1-distill-qwen.jinja", tools: true, thinking: true,
    special_tokens: { bos_token: "<｜begin▁of▁sentence｜>", eos_token: "<｜end▁of▁sentence｜>", pad_token: "<｜end▁of▁sentence｜>" } },
  { name: "deepseek-r1-distill-llama", file: "templates/deepseek-r1-distill-llama.jinja", tools: true, thinking: true,
    special_tokens: { bos_token: "<｜begin▁of▁sentence｜>", eos_token: "<｜end▁of▁sentence｜>", pad_token: "<｜end▁of▁sentence｜>" } },
  { name: "phi-3.5-mini", file: "templates/phi-3.5-mini.jinja",
    special_tokens: { bos_token: "<s>", eos_token: "<|endoftext|>", unk_token: "<unk>", pad_token: "<|endoftext|>" } },
  { name: "phi-4", file: "templates/phi-4.jinja",
    special_tokens: { bos_token: "<|endoftext|>", eos_token: "<|im_end|>", unk_token: "<|endoftext|>", pad_token: "<|dummy_87|>" } },
  { name: "hermes-3-tool_use", file: "templates/hermes-3-tool_use.jinja", tools: true,
    special_tokens: { bos_token: "<|begin_of_text|>", eos_token: "<|im_end|>" } },
  { name: "functionary-v3.1", file: "templates/functionary-v3.1.jinja", tools: true,
    special_tokens: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" } },
  { name: "functionary-v3.2", file: "templates/functionary-v3.2.jinja", tools: true,
    special_tokens: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" } },
  // firefunction-v2 reads `functions` (a JSON string) and `datetime` from the
  // caller's kwargs; `context` goes into every case's extra_context.
  { name: "firefunction-v2", file: "templates/firefunction-v2.jinja", tools: true,
    context: { functions: "[{\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}]", datetime: "2026-07-26" },
    special_tokens: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" } },
  { name: "qwq-32b", file: "templates/qwq-32b.jinja", tools: true, thinking: true,
    special_tokens: { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" } },
  { name: "granite-3.3", file: "templates/granite-3.3.jinja", tools: true,
    special_tokens: { bos_token: "<|end_of_text|>", eos_token: "<|end_of_text|>", pad_token: "<|end_of_text|>" } },
  { name: "command-r7b-tool_use", file: "templates/command-r7b-tool_use.jinja", tools: true,
    special_tokens: { bos_token: "<BOS_TOKEN>", eos_token: "<|END_OF_TURN_TOKEN|>", pad_token: "<PAD>" } },
  { name: "mistral-small-3.2", file: "templates/mistral-small-3.2.jinja", tools: true,
    special_tokens: { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" } },
  { name: "kimi-k2", file: "templates/kimi-k2.jinja", tools: true,
    special_tokens: { bos_token: "[BOS]", eos_token: "[EOS]", unk_token: "[UNK]", pad_token: "[PAD]" } },
  { name: "nemotron-nano-v2", file: "templates/nemotron-nano-v2.jinja", tools: true, thinking: true,
    special_tokens: { bos_token: "<SPECIAL_10>", eos_token: "<SPECIAL_12>" } },
  { name: "minimax-m2", file: "templates/minimax-m2.jinja", tools: true, thinking: true,
    special_tokens: { bos_token: "]~!b[", eos_token: "[e~[", unk_token: "]!d~[" } },
  { name: "glm-4.6", file: "templates/glm-4.6.jinja", tools: true, thinking: true,
    variants: [{ enable_thinking: false }],
    special_tokens: { eos_token: "<|endoftext|>", pad_token: "<|endoftext|>" } },
];

// Loads a template's source (for `files`, {name: source}) and special tokens.
function load(t) {
  if (t.files) {
    const sources = {};
    for (const [name, file] of Object.entries(t.files)) sources[name] = fs.readFileSync(path.join(HERE, file), "utf8");
    return { sources, special_tokens: t.special_tokens };
  }
  if (t.file) {
    return { source: fs.readFileSync(path.join(HERE, t.file), "utf8"), special_tokens: t.special_tokens };
  }
  const config = JSON.parse(fs.readFileSync(path.join(SHARED, t.shared), "utf8"));
  let source = config.chat_template;
  if (Array.isArray(source)) {
    const named = source.find((entry) => entry.name === (t.template_name ?? "default"));
    if (!named) throw new Error(`${t.shared}: no chat template named ${t.template_name ?? "default"}`);
    source = named.template;
  }
  if (typeof source !== "string") throw new Error(`${t.shared}: no chat_template`);
  return { source, special_tokens: specialTokensOf(config) };
}

const conversations = JSON.parse(fs.readFileSync(path.join(HERE, "conversations.json"), "utf8")).conversations;
const isToolConversation = (c) =>
  c.tools !== undefined || c.messages.some((m) => m.tool_calls !== undefined || m.role === "tool" || m.role === "ipython");
const isDocumentsConversation = (c) => c.documents !== undefined;
const isThinkingConversation = (c) => c.messages.some((m) => typeof m.content === "string" && m.content.includes("<think>"));

const out = { generator: `@huggingface/jinja ${JINJA_VERSION}`, now: NOW, templates: [], cases: [] };
const omitted = [];
for (const t of TEMPLATES) {
  const { source, sources, special_tokens } = load(t);
  const entry = { name: t.name };
  if (t.files) entry.files = t.files;
  else if (t.file) entry.file = t.file;
  else entry.shared = t.shared;
  if (t.template_name) entry.template_name = t.template_name;
  entry.special_tokens = special_tokens;
  out.templates.push(entry);

  // A single template, or one run per named template of `files`.
  const runs = t.files
    ? t.named.map((n) => ({ ...n, template: new Template(sources[n.name]) }))
    : [{ template: new Template(source), variants: t.variants }];
  for (const run of runs) {
  const template = run.template;
  for (const [conversationName, conversation] of Object.entries(conversations)) {
    if (run.only !== undefined) {
      const kind = isDocumentsConversation(conversation) ? "documents" : isToolConversation(conversation) ? "tools" : "plain";
      if (kind !== run.only) continue;
    } else if (isDocumentsConversation(conversation)) continue;
    if (isToolConversation(conversation) && !t.tools && run.only !== "tools") continue;
    if (isThinkingConversation(conversation) && !t.thinking && t.name !== "qwen2.5" && t.name !== "deepseek-v3") continue;
    for (const variant of [{}, ...(run.variants ?? [])]) {
      for (const addGenerationPrompt of [true, false]) {
        // What apply_chat_template passes: tools and documents always (null
        // when not given), the special tokens, then the caller's kwargs. The
        // expectations carry tools/documents in extra_context explicitly.
        const extra = { tools: conversation.tools ?? null, documents: conversation.documents ?? null, ...t.context, ...variant };
        const context = {
          messages: structuredClone(conversation.messages),
          add_generation_prompt: addGenerationPrompt,
          ...special_tokens,
          ...structuredClone(extra),
        };
        const c = { template: t.name };
        if (run.name !== undefined) c.template_name = run.name;
        Object.assign(c, { conversation: conversationName, add_generation_prompt: addGenerationPrompt, extra_context: extra });
        try {
          c.expected = template.render(context);
        } catch (e) {
          if (!(e instanceof RaisedByTemplate)) {
            omitted.push(`${t.name}${run.name !== undefined ? ` (${run.name})` : ""} / ${conversationName} / ${JSON.stringify(variant)} / add_generation_prompt=${addGenerationPrompt}: ${e.message}`);
            continue;
          }
          c.error = e.message;
        }
        out.cases.push(c);
      }
    }
  }
  }
}

fs.writeFileSync(path.join(HERE, "expectations.json"), JSON.stringify(out, null, 1) + "\n");
const errors = out.cases.filter((c) => c.error !== undefined).length;
console.log(`${out.templates.length} templates, ${out.cases.length} cases (${errors} raise_exception), ${omitted.length} omitted`);
for (const line of omitted) console.log(`omitted: ${line}`);
