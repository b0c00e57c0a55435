// Streams one generation with the official openai-node SDK and prints what it received as JSON:
// node stream_images.mjs BASE_URL API_KEY MODEL
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const stream = await client.images.generate({
  model,
  prompt: "a lighthouse at dusk",
  stream: true,
  partial_images: 2,
  quality: "high",
  size: "1024x1536",
});
const events = [];
for await (const event of stream) {
  events.push({
    type: event.type,
    partial_image_index: event.partial_image_index ?? null,
    size: event.size,
    bytes: Buffer.from(event.b64_json, "base64").length,
    usage: event.usage ?? null,
  });
}
console.log(JSON.stringify(events));
