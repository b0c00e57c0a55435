// Edits and varies one image with the official openai-node SDK and prints what came back as JSON:
// node edit_images.mjs BASE_URL API_KEY IMAGE MASK
import fs from "node:fs";
import OpenAI from "openai";

const [baseURL, apiKey, imagePath, maskPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const masked = await client.images.edit({
  model: "dall-e-2",
  image: fs.createReadStream(imagePath),
  mask: fs.createReadStream(maskPath),
  prompt: "a red balloon",
  size: "256x256",
  response_format: "b64_json",
});

const stream = await client.images.edit({
  model: "gpt-image-1",
  image: fs.createReadStream(imagePath),
  prompt: "paint it blue",
  size: "1024x1024",
  quality: "high", // enough steps for two partial images whatever the machine's built-in steps
  stream: true,
  partial_images: 2,
});
const events = [];
for await (const event of stream) {
  events.push({
    type: event.type,
    partial_image_index: event.partial_image_index ?? null,
    b64_json: event.b64_json,
  });
}

const variations = await client.images.createVariation({
  image: fs.createReadStream(imagePath),
  n: 2,
  size: "256x256",
  response_format: "b64_json",
});

console.log(JSON.stringify({
  masked: masked.data.map((image) => image.b64_json),
  events,
  variations: variations.data.map((image) => image.b64_json),
}));
