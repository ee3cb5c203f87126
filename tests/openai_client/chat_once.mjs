// One streamed chat completion with the official OpenAI Node.js client;
// prints the assistant's text exactly (no newline added), for comparison
// with the gRPC path (tests/openai_client_test.sh).
//
// Usage: node chat_once.mjs --base-url URL --key KEY --model MODEL
//          --message TEXT --seed N --temperature T --max-tokens N
import { parseArgs } from "node:util";
import OpenAI from "openai";

const { values: args } = parseArgs({
  options: {
    "base-url": { type: "string" },
    key: { type: "string" },
    model: { type: "string" },
    message: { type: "string" },
    seed: { type: "string" },
    temperature: { type: "string" },
    "max-tokens": { type: "string" },
  },
});
const client = new OpenAI({ baseURL: args["base-url"], apiKey: args.key, maxRetries: 0 });
const stream = await client.chat.completions.create({
  model: args.model,
  messages: [{ role: "user", content: args.message }],
  seed: Number(args.seed),
  temperature: Number(args.temperature),
  max_tokens: Number(args["max-tokens"]),
  stream: true,
});
let text = "";
for await (const chunk of stream) {
  for (const choice of chunk.choices) text += choice.delta?.content ?? "";
}
process.stdout.write(text);
