// The official OpenAI Node.js client (the `openai` package pinned in
// package.json) against a live `packd serve`: completions and chat, streamed
// and not, stop strings, error classes, and a stream cancelled with an
// AbortController (the server must count it CANCELLED at once).
//
// Usage: node client_test.mjs --base-url http://127.0.0.1:PORT/v1 --key KEY
//          --model MODEL --metrics http://127.0.0.1:PORT/metrics
// Exits 0 when every check passes, 1 (naming the check) otherwise.
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import OpenAI from "openai";

const { values: args } = parseArgs({
  options: {
    "base-url": { type: "string" },
    key: { type: "string" },
    model: { type: "string" },
    metrics: { type: "string" },
  },
});
const model = args.model;
const client = new OpenAI({ baseURL: args["base-url"], apiKey: args.key, maxRetries: 0 });
const prompt = "Once upon a time";
const reference = ", there was a little girl named Lily.";

async function check(name, fn) {
  try {
    await fn();
    console.log(`openai_client: ok: ${name}`);
  } catch (e) {
    console.error(`openai_client: FAIL: ${name}: ${e?.stack ?? e}`);
    process.exit(1);
  }
}

async function collect(stream, pick) {
  let text = "";
  let finish = null;
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += pick(choice) ?? "";
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return { text, finish, chunks, usage };
}

async function cancelledCount() {
  const body = await (await fetch(args.metrics)).text();
  let n = 0;
  for (const line of body.split("\n")) {
    if (line.startsWith('packd_requests_total{code="CANCELLED"')) n += Number(line.split(" ").pop());
  }
  return n;
}

await check("completions", async () => {
  const r = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.match(r.id, /^cmpl-/);
  assert.ok(r.choices[0].text.startsWith(reference), r.choices[0].text);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 20);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 20);
});

await check("completions streamed", async () => {
  const whole = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0 });
  const stream = await client.completions.create({
    model, prompt, max_tokens: 20, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  const s = await collect(stream, (c) => c.text);
  assert.equal(s.text, whole.choices[0].text);
  assert.equal(s.finish, "length");
  assert.ok(s.chunks > 2, `${s.chunks} chunks`);
  assert.equal(s.usage?.completion_tokens, 20);
});

await check("seeded sampling is reproducible", async () => {
  const a = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0.9, seed: 3 });
  const b = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0.9, seed: 3 });
  assert.equal(a.choices[0].text, b.choices[0].text);
});

await check("stop strings", async () => {
  const r = await client.completions.create({
    model, prompt, max_tokens: 30, temperature: 0, stop: ["Lily", "park"],
  });
  assert.equal(r.choices[0].text, ", there was a little girl named ");
  assert.equal(r.choices[0].finish_reason, "stop");
});

// Chat: the server renders the model's chat template (the test's config gives
// stories260K configs/stories-chat.jinja: bos + the turns, so a one-message
// chat continues that message as a story).
await check("chat completions", async () => {
  const messages = [{ role: "user", content: prompt }];
  const r = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
  assert.equal(r.object, "chat.completion");
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.ok(r.choices[0].message.content.startsWith(", there was a little"), r.choices[0].message.content);
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 12, temperature: 0, stream: true,
  });
  let first = true;
  const s = await collect(stream, (c) => {
    if (first) assert.equal(c.delta.role, "assistant");
    first = false;
    return c.delta.content;
  });
  assert.equal(s.text, r.choices[0].message.content);
  assert.equal(s.finish, r.choices[0].finish_reason);
});

// Prefix caching: a conversation re-sent with one more exchange reuses the
// earlier turns' KV blocks, which usage reports as OpenAI does; cache_prompt:
// false (llama.cpp's field) opts one request out.
await check("a multi-turn chat reuses its earlier turns (prompt_tokens_details)", async () => {
  const story = "Once upon a time, there was a little dog named Max who liked to run in the park";
  const messages = [{ role: "user", content: story }];
  const first = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0 });
  messages.push({ role: "assistant", content: first.choices[0].message.content });
  messages.push({ role: "user", content: "Then Max saw a cat." });
  const second = await client.chat.completions.create({ model, messages, max_tokens: 4, temperature: 0 });
  const cached = second.usage.prompt_tokens_details?.cached_tokens;
  assert.ok(cached >= 16 && cached < second.usage.prompt_tokens, `cached ${cached} of ${second.usage.prompt_tokens}`);
  const off = await client.chat.completions.create({ model, messages, max_tokens: 4, temperature: 0, cache_prompt: false });
  assert.equal(off.usage.prompt_tokens_details?.cached_tokens, 0);
  assert.equal(off.choices[0].message.content, second.choices[0].message.content);
});

await check("models", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(model), ids.join(","));
});

await check("errors are the client's error classes", async () => {
  const wrong = new OpenAI({ baseURL: args["base-url"], apiKey: "not-a-key", maxRetries: 0 });
  await assert.rejects(wrong.completions.create({ model, prompt }), OpenAI.AuthenticationError);
  await assert.rejects(client.completions.create({ model: "no-such-model", prompt }), OpenAI.NotFoundError);
  await assert.rejects(client.completions.create({ model, prompt, n: 2 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.match(e.message, /n: only 1 is supported/);
    assert.equal(e.param, "n");
    return true;
  });
});

await check("an aborted stream is cancelled on the server", async () => {
  const before = await cancelledCount();
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model, prompt, max_tokens: 2000, ignore_eos: true, stream: true },
    { signal: controller.signal },
  );
  // The client's stream ends quietly when aborted (or throws an abort error,
  // as older versions did).
  let chunks = 0;
  try {
    for await (const _ of stream) {
      if (++chunks === 3) controller.abort();
    }
  } catch (e) {
    if (!(e instanceof OpenAI.APIUserAbortError || e?.name === "AbortError")) throw e;
  }
  assert.ok(chunks >= 3 && chunks < 1000, `${chunks} chunks`);  // buffered ones still arrive
  const deadline = Date.now() + 3000;
  while ((await cancelledCount()) === before && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(await cancelledCount(), before + 1);
});

await check("chat: the template's refusal is a BadRequestError", async () => {
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: "system", content: "Be brief." }] }),
    (e) => e instanceof OpenAI.BadRequestError && /no system prompt/.test(e.message),
  );
});

console.log("openai_client: PASS");
