// The Easel playground: a client of the public API (/v1/models, /v1/images/generations, /edits and
// /variations) that keeps the API key and a history of recent generations in this browser's
// localStorage. With streaming on, it reads OpenAI's server-sent events and shows each partial
// image as it arrives. The Edit tab sends the chosen images and a mask painted over the first.
// Every text from the user or the server goes in through textContent or attributes, never as HTML.

const KEY_STORAGE = "easel.apiKey";
const HISTORY_STORAGE = "easel.history";
const HISTORY_LIMIT = 20;
const THUMB_SIDE = 160;
const MASK_COLOR = "#00e5ff"; // cyan: seldom the colour of what is painted over

const $ = (id) => document.getElementById(id);

const state = {
  models: new Map(),
  running: null, // the AbortController of the request in flight
  shown: [], // the result cards on screen before the request, put back if it fails
  mode: "generate", // or "edit"
  editImages: [], // the Files the Edit tab sends, the mask painting over the first
};

// ---- small DOM helpers ------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function setOptions(select, values, selected) {
  select.replaceChildren(...values.map((value) => el("option", { value, text: value })));
  if (values.includes(selected)) select.value = selected;
}

function maskKey(key) {
  return key.length > 12 ? `${key.slice(0, 5)}…${key.slice(-4)}` : "set";
}

// ---- API key ----------------------------------------------------------------------------------

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function showKeyPanel(open) {
  $("key-panel").hidden = !open;
  $("key-toggle").setAttribute("aria-expanded", String(open));
}

function refreshKeyChip() {
  const key = apiKey();
  $("key-toggle").textContent = key ? `Key ${maskKey(key)}` : "Set API key";
  $("key-toggle").classList.toggle("warn", !key);
}

async function saveKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) {
    showError({ title: "No API key", message: "Paste a key that starts with sk-." });
    return;
  }
  localStorage.setItem(KEY_STORAGE, key);
  $("api-key").value = "";
  refreshKeyChip();
  showError(null);
  if (await loadModels()) showKeyPanel(false);
}

// ---- talking to the server --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, error, requestId, retryAfter) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.error = error;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// The response to a request with the API key; an ApiError when the server refused it.
async function send(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    const body = await readJson(response);
    const error = body && body.error ? body.error : { message: `The server answered HTTP ${response.status}.` };
    throw new ApiError(response.status, error, response.headers.get("x-request-id"),
      response.headers.get("retry-after"));
  }
  return response;
}

async function api(path, options = {}) {
  return readJson(await send(path, options));
}

// Server-sent events as they arrive, each as {event, data}: fields are `name: value` lines, and a
// blank line ends an event (the text/event-stream format).
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon === 0) continue; // a comment, such as a keep-alive
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) yield { event, data: data.join("\n") };
      end = buffer.indexOf("\n\n");
    }
  }
}

function errorTitle(status, error) {
  if (status === 401) return "API key rejected";
  if (status === 403) return "Not allowed";
  if (status === 404) return error.code === "model_not_found" ? "Unknown model" : "Not found";
  if (status === 413) return "Request too large";
  if (status === 429) return error.code === "insufficient_quota" ? "Quota used up" : "Rate limit reached";
  if (status === 503) return "Model unavailable";
  if (status >= 500) return "Server error";
  return error.param ? `Invalid ${error.param}` : "Request refused";
}

function describe(exc) {
  if (exc.name === "AbortError") return null;
  if (!(exc instanceof ApiError)) {
    return { title: "Cannot reach the server", message: String(exc.message || exc) };
  }
  const details = [];
  if (exc.error.code) details.push(`code ${exc.error.code}`);
  if (exc.error.param) details.push(`param ${exc.error.param}`);
  details.push(`HTTP ${exc.status}`);
  if (exc.retryAfter) details.push(`retry after ${exc.retryAfter} s`);
  if (exc.requestId) details.push(`request ${exc.requestId}`);
  return { title: errorTitle(exc.status, exc.error), message: exc.error.message, detail: details.join(" · ") };
}

function showError(info) {
  if (!info) {
    $("error").hidden = true;
    return;
  }
  $("error-title").textContent = info.title;
  $("error-message").textContent = info.message;
  $("error-detail").textContent = info.detail || "";
  $("error").hidden = false;
}

// ---- models and the form ----------------------------------------------------------------------

async function loadModels() {
  if (!apiKey()) {
    showKeyPanel(true);
    return false;
  }
  try {
    const body = await api("/v1/models");
    state.models = new Map(body.data.filter((m) => m.easel).map((m) => [m.id, m]));
  } catch (exc) {
    showError(describe(exc));
    if (exc instanceof ApiError && exc.status === 401) showKeyPanel(true);
    return false;
  }
  showModels();
  return true;
}

// The models the current tab can use (the Edit tab: those that take edits), keeping the chosen one
// where it is among them.
function showModels() {
  const current = $("model").value;
  const ids = [...state.models.values()]
    .filter((model) => state.mode !== "edit" || model.easel.edits)
    .map((model) => model.id);
  setOptions($("model"), ids, current || (ids.includes("dall-e-2") ? "dall-e-2" : ids[0]));
  for (const option of $("model").options) {
    const modelState = state.models.get(option.value).easel.state;
    if (modelState && modelState !== "ready") option.textContent = `${option.value} (${modelState})`;
  }
  applyModel();
}

function currentCaps() {
  const model = state.models.get($("model").value);
  return model ? model.easel : null;
}

// Offer only what the chosen model accepts, keeping the user's choices where they still apply.
function applyModel() {
  const caps = currentCaps();
  if (!caps) return;
  // The GPT image models' output controls; dall-e models make opaque PNGs only.
  const gpt = caps.output_formats.length > 1;
  for (const field of document.querySelectorAll(".gpt-only")) field.hidden = !gpt;
  $("response-format-field").hidden = caps.response_formats.length === 0;
  setOptions($("output-format"), caps.output_formats, $("output-format").value || caps.output_formats[0]);
  setOptions($("background"), caps.backgrounds, $("background").value || "auto");
  $("stream-field").hidden = !gpt || !caps.streams;
  applyOutputFormat();
  setOptions($("size"), caps.sizes, $("size").value || caps.default_size);
  if (!caps.sizes.includes($("size").value)) $("size").value = caps.default_size;
  setOptions($("quality"), caps.qualities, $("quality").value);
  if (!caps.qualities.includes($("quality").value)) $("quality").value = caps.default_quality;
  // Edits take no style, as OpenAI's.
  $("style-field").hidden = caps.styles.length === 0 || state.mode === "edit";
  $("variations").hidden = state.mode !== "edit" || !caps.variations;
  setOptions($("style"), caps.styles, $("style").value);
  if (caps.styles.length && !caps.styles.includes($("style").value)) $("style").value = caps.default_style;
  setOptions($("response-format"), caps.response_formats, $("response-format").value || caps.response_formats[0]);
  const n = $("n");
  n.max = String(caps.max_n);
  n.disabled = caps.max_n === 1;
  if (Number(n.value) > caps.max_n || caps.max_n === 1) n.value = "1";
  $("prompt").maxLength = caps.max_prompt_chars;
  $("prompt-max").textContent = String(caps.max_prompt_chars);
  updateCount();
}

// Compression applies to jpeg and webp; transparency to png and webp.
function applyOutputFormat() {
  const format = $("output-format").value;
  const gpt = !$("output-format").closest(".field").hidden;
  $("compression-field").hidden = !gpt || format === "png";
  for (const option of $("background").options) {
    option.disabled = option.value === "transparent" && format === "jpeg";
  }
  if ($("background").selectedOptions[0]?.disabled) $("background").value = "auto";
}

function updateCount() {
  $("prompt-count").textContent = String($("prompt").value.length);
}

function requestBody() {
  const caps = currentCaps();
  const body = {
    model: $("model").value,
    prompt: $("prompt").value,
    size: $("size").value,
    quality: $("quality").value,
  };
  // GPT image models refuse the field: they always answer b64_json.
  if (!caps || caps.response_formats.length) body.response_format = $("response-format").value;
  if (!$("style-field").hidden) body.style = $("style").value;
  if (!$("output-format").closest(".field").hidden) {
    body.output_format = $("output-format").value;
    body.background = $("background").value;
    const compression = $("output-compression").value.trim();
    if (!$("compression-field").hidden && compression) {
      body.output_compression = /^-?\d+$/.test(compression) ? Number(compression) : compression;
    }
    if (!$("stream-field").hidden && $("stream").checked) {
      body.stream = true;
      body.partial_images = Number($("partial-images").value);
    }
  }
  const n = $("n").value.trim();
  if (n) body.n = /^-?\d+$/.test(n) ? Number(n) : n;
  const seed = $("seed").value.trim();
  // Sent as typed (a number when it is one): the server's checks and messages apply.
  if (seed) body.seed = /^-?\d+$/.test(seed) ? Number(seed) : seed;
  return body;
}

// ---- requests: generations, edits, variations -----------------------------------------------

// Each job: where it goes, what it sends, and the fields the page shows while it runs and after.
function generationJob() {
  const body = requestBody();
  return {
    path: "/v1/images/generations",
    init: { headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) },
    body,
    verb: "Generating",
    remember: true,
  };
}

// Multipart fields as the SDKs send them: every value a string, booleans as "true" or "false".
function formData(body) {
  const form = new FormData();
  for (const [name, value] of Object.entries(body)) form.append(name, String(value));
  return form;
}

async function editJob() {
  const body = requestBody();
  const form = formData(body);
  const [first, ...more] = state.editImages;
  if (more.length) for (const file of state.editImages) form.append("image[]", file);
  else form.append("image", first);
  const mask = await maskBlob();
  if (mask) form.append("mask", mask, "mask.png");
  return { path: "/v1/images/edits", init: { body: form }, body, verb: "Editing", remember: false };
}

// Variations take no prompt: only the image, the model, n, size and response format.
function variationJob() {
  const fields = requestBody();
  const body = { model: fields.model, size: fields.size };
  if (fields.n !== undefined) body.n = fields.n;
  if (fields.response_format) body.response_format = fields.response_format;
  const form = formData(body);
  form.append("image", state.editImages[0]);
  return { path: "/v1/images/variations", init: { body: form }, body, verb: "Varying", remember: false };
}

function modeLabels() {
  return state.mode === "edit" ? ["Edit", "Editing…"] : ["Generate", "Generating…"];
}

function setRunning(controller, body) {
  state.running = controller;
  const running = controller !== null;
  document.body.classList.toggle("running", running);
  $("generate").disabled = running;
  $("variations").disabled = running;
  $("generate-label").textContent = modeLabels()[running ? 1 : 0];
  $("cancel").hidden = !running;
  $("results").setAttribute("aria-busy", String(running));
  if (running) {
    const count = Math.max(1, Math.min(Number(body.n) || 1, 10));
    // `auto` sizes are the server's choice: square placeholders until the images arrive.
    const [w, h] = /^\d+x\d+$/.test(body.size) ? body.size.split("x").map(Number) : [1, 1];
    state.shown = [...$("results").children];
    $("results").replaceChildren(...Array.from({ length: count }, () => {
      const slot = el("div", { class: "card placeholder" });
      slot.style.aspectRatio = `${w} / ${h}`;
      return slot;
    }));
    $("results-empty").hidden = true;
  }
}

let timer = null;

function startClock(started, job) {
  const label = `${job.body.model}, ${job.body.n || 1} × ${job.body.size}`;
  const tick = () => {
    $("status").textContent = `${job.verb} ${label} … ${((performance.now() - started) / 1000).toFixed(1)} s`;
  };
  tick();
  timer = setInterval(tick, 100);
}

function stopClock(text) {
  clearInterval(timer);
  $("status").textContent = text;
}

// Sends the job `makeJob` builds and shows its images, or the server's refusal.
async function run(makeJob) {
  if (state.running) return;
  showError(null);
  if (!apiKey()) {
    showKeyPanel(true);
    showError({ title: "No API key", message: "Enter your API key first." });
    return;
  }
  const job = await makeJob();
  const { body } = job;
  const controller = new AbortController();
  const started = performance.now();
  setRunning(controller, body);
  startClock(started, job);
  try {
    const request = { method: "POST", ...job.init, signal: controller.signal };
    const result = body.stream
      ? await streamImages(job.path, request, body)
      : await api(job.path, request);
    const seconds = (performance.now() - started) / 1000;
    stopClock(`Done in ${seconds.toFixed(1)} s.`);
    const cards = showResults(result, body, seconds);
    if (job.remember) await remember(body, result, seconds, cards);
    // A model that was still loading is ready now: refresh the labels that said so.
    if ([...state.models.values()].some((m) => m.easel.state !== "ready")) loadModels();
  } catch (exc) {
    const info = describe(exc);
    stopClock(info ? "" : "Cancelled.");
    $("results").replaceChildren(...state.shown);
    $("results-empty").hidden = state.shown.length > 0;
    showError(info);
  } finally {
    setRunning(null, body);
  }
}

// Edits and variations need an image; the server judges everything else.
function runWithImage(makeJob) {
  if (state.editImages.length) {
    run(makeJob);
  } else {
    showError({ title: "No image", message: "Choose or drop an image first." });
  }
}

function submit(event) {
  event.preventDefault();
  if (state.mode === "edit") runWithImage(editJob);
  else run(generationJob);
}

// OpenAI's streamed images (image_generation.* or image_edit.* events): partial images, then one
// completed event per image, each shown in its placeholder as it arrives; the answer as a
// non-streamed request gives it.
async function streamImages(path, request, body) {
  const response = await send(path, request);
  const completed = [];
  for await (const { event, data } of serverEvents(response)) {
    if (data === "[DONE]") break;
    const payload = JSON.parse(data);
    if (event === "error" || payload.error) {
      throw new ApiError(response.status, payload.error || {}, response.headers.get("x-request-id"), null);
    }
    if (payload.type.endsWith(".partial_image")) {
      showPreview(completed.length, payload, `Preview ${payload.partial_image_index + 1} of ${body.partial_images}`);
    } else if (payload.type.endsWith(".completed")) {
      completed.push(payload);
      showPreview(completed.length - 1, payload, "Done");
    }
  }
  if (!completed.length) throw new Error("The stream ended before any image arrived.");
  const last = completed[completed.length - 1];
  return {
    data: completed.map((item) => ({ b64_json: item.b64_json, seed: item.seed })),
    output_format: last.output_format,
    background: last.background,
  };
}

function showPreview(index, payload, label) {
  const slot = $("results").children[index];
  if (!slot) return;
  const img = el("img", { src: imageSource(payload, payload.output_format), alt: label, title: label });
  if (payload.type.endsWith(".partial_image")) img.dataset.partialIndex = String(payload.partial_image_index);
  slot.replaceChildren(img);
  slot.classList.add("preview");
}

function imageSource(item, format) {
  return item.b64_json ? `data:image/${format || "png"};base64,${item.b64_json}` : item.url;
}

function showResults(result, body, seconds) {
  const format = result.output_format || "png";
  const cards = result.data.map((item, index) => {
    const img = el("img", { src: imageSource(item, format), alt: body.prompt || "Variation", loading: "eager" });
    if (result.background === "transparent") img.classList.add("transparent");
    img.dataset.index = String(index);
    const meta = el("div", { class: "meta" });
    if (item.revised_prompt) {
      meta.append(el("p", { class: "revised", text: item.revised_prompt, title: "Revised prompt" }));
    }
    const facts = el("div", { class: "facts" },
      el("span", { class: "seed", text: item.seed === undefined ? "seed unknown" : `seed ${item.seed}` }),
      el("span", { text: body.size }),
      el("span", { class: "took", text: `${seconds.toFixed(1)} s` }));
    const reuse = el("button", { type: "button", class: "secondary small", text: "Use seed" });
    reuse.addEventListener("click", () => {
      $("seed").value = String(item.seed);
      $("n").value = "1";
    });
    const download = el("a", {
      class: "button small",
      href: imageSource(item, format),
      download: `easel-${body.model}-${item.seed}.${format}`,
      text: "Download",
    });
    meta.append(facts, el("div", { class: "card-actions" }, reuse, download));
    return el("figure", { class: "card" }, img, meta);
  });
  $("results").replaceChildren(...cards);
  $("results-empty").hidden = cards.length > 0;
  return cards;
}

// ---- the Edit tab: images and the mask ---------------------------------------------------------

function setMode(mode) {
  state.mode = mode;
  const edit = mode === "edit";
  $("tab-generate").setAttribute("aria-selected", String(!edit));
  $("tab-edit").setAttribute("aria-selected", String(edit));
  $("edit-fields").hidden = !edit;
  if (!state.running) $("generate-label").textContent = modeLabels()[0];
  showModels();
}

function setEditImages(files) {
  state.editImages = [...files];
  $("edit-files").textContent = state.editImages.map((file) => file.name).join(", ");
  const image = $("mask-image");
  if (image.src) URL.revokeObjectURL(image.src);
  $("mask-editor").hidden = true;
  if (state.editImages.length) image.src = URL.createObjectURL(state.editImages[0]);
  else image.removeAttribute("src");
}

// The mask canvas has the first image's own pixel size, so the mask sent matches it.
function showMaskEditor() {
  const image = $("mask-image");
  const canvas = $("mask-canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  $("mask-editor").hidden = false;
}

// Strokes in the mask colour (or erasing it) under the pointer; the brush size is in screen pixels.
function paintMask() {
  const canvas = $("mask-canvas");
  const context = canvas.getContext("2d");
  let last = null;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    const scale = canvas.width / box.width;
    return { x: (event.clientX - box.left) * scale, y: (event.clientY - box.top) * scale, scale };
  };
  const stroke = (from, to) => {
    context.globalCompositeOperation = $("mask-erase").checked ? "destination-out" : "source-over";
    context.strokeStyle = context.fillStyle = MASK_COLOR;
    context.lineWidth = Number($("brush-size").value) * to.scale;
    context.lineCap = context.lineJoin = "round";
    context.beginPath();
    if (from === to) {
      context.arc(to.x, to.y, context.lineWidth / 2, 0, 2 * Math.PI);
      context.fill();
    } else {
      context.moveTo(from.x, from.y);
      context.lineTo(to.x, to.y);
      context.stroke();
    }
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    stroke(last, last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    stroke(last, next);
    last = next;
  });
  for (const type of ["pointerup", "pointercancel"]) canvas.addEventListener(type, () => { last = null; });
}

// OpenAI's mask: a PNG of the image's size, fully transparent where the image is to change and
// opaque elsewhere. None when nothing is painted: the whole image is edited.
async function maskBlob() {
  const painted = $("mask-canvas");
  if ($("mask-editor").hidden || !painted.width) return null;
  const pixels = painted.getContext("2d").getImageData(0, 0, painted.width, painted.height).data;
  let any = false;
  for (let alpha = 3; alpha < pixels.length && !any; alpha += 4) any = pixels[alpha] > 0;
  if (!any) return null;
  const mask = el("canvas");
  mask.width = painted.width;
  mask.height = painted.height;
  const context = mask.getContext("2d");
  context.fillRect(0, 0, mask.width, mask.height);
  context.globalCompositeOperation = "destination-out";
  context.drawImage(painted, 0, 0);
  return new Promise((resolve) => mask.toBlob(resolve, "image/png"));
}

function watchDrops() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    setEditImages(event.dataTransfer.files);
  });
}

// ---- history ----------------------------------------------------------------------------------

function loadHistory() {
  try {
    const entries = JSON.parse(localStorage.getItem(HISTORY_STORAGE) || "[]");
    return Array.isArray(entries) ? entries : [];
  } catch {
    return [];
  }
}

function saveHistory(entries) {
  // Thumbnails make entries large: drop the oldest until the browser's storage accepts them.
  for (let kept = entries.length; kept >= 0; kept -= 1) {
    try {
      localStorage.setItem(HISTORY_STORAGE, JSON.stringify(entries.slice(0, kept)));
      return;
    } catch {
      continue;
    }
  }
}

async function thumbnail(img) {
  try {
    await img.decode();
    const scale = THUMB_SIDE / Math.max(img.naturalWidth, img.naturalHeight);
    const canvas = el("canvas");
    canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
    canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
    canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL("image/jpeg", 0.75);
  } catch {
    return null; // an image from another origin cannot be read back; the entry keeps its text
  }
}

async function remember(body, result, seconds, cards) {
  const first = cards[0] ? await thumbnail(cards[0].querySelector("img")) : null;
  const entry = {
    at: Date.now(),
    prompt: body.prompt,
    model: body.model,
    size: body.size,
    quality: body.quality,
    style: body.style || null,
    n: result.data.length,
    response_format: body.response_format,
    output_format: body.output_format,
    background: body.background,
    seeds: result.data.map((item) => item.seed),
    seconds: Math.round(seconds * 10) / 10,
    thumbnail: first,
  };
  saveHistory([entry, ...loadHistory()].slice(0, HISTORY_LIMIT));
  renderHistory();
}

function renderHistory() {
  const entries = loadHistory();
  const items = entries.map((entry) => {
    const thumb = entry.thumbnail && entry.thumbnail.startsWith("data:image/")
      ? el("img", { src: entry.thumbnail, alt: "" })
      : el("div", { class: "thumb-empty", "aria-hidden": "true" });
    const seeds = entry.seeds.length > 1
      ? `seeds ${entry.seeds[0]}–${entry.seeds[entry.seeds.length - 1]}`
      : `seed ${entry.seeds[0]}`;
    const when = new Date(entry.at).toLocaleString();
    const button = el("button", { type: "button", class: "history-item", title: "Load these settings" },
      thumb,
      el("span", { class: "history-text" },
        el("span", { class: "history-prompt", text: entry.prompt }),
        el("span", { class: "muted", text: `${entry.model} · ${entry.size} · ${seeds} · ${entry.seconds} s` }),
        el("span", { class: "muted small", text: when })));
    button.addEventListener("click", () => restore(entry));
    return el("li", {}, button);
  });
  $("history").replaceChildren(...items);
  $("clear-history").hidden = entries.length === 0;
}

function restore(entry) {
  // A model the current tab does not offer (dall-e-3 on the Edit tab) stays unchosen.
  if ([...$("model").options].some((option) => option.value === entry.model)) {
    $("model").value = entry.model;
    applyModel();
  }
  $("prompt").value = entry.prompt;
  for (const [id, value] of [["size", entry.size], ["quality", entry.quality], ["style", entry.style],
    ["response-format", entry.response_format], ["output-format", entry.output_format],
    ["background", entry.background]]) {
    if (value && [...$(id).options].some((o) => o.value === value)) $(id).value = value;
  }
  applyOutputFormat();
  $("n").value = String(entry.n);
  $("seed").value = String(entry.seeds[0]);
  updateCount();
  $("prompt").focus();
}

// ---- start ------------------------------------------------------------------------------------

function start() {
  $("key-panel").addEventListener("submit", saveKey);
  $("key-toggle").addEventListener("click", () => showKeyPanel($("key-panel").hidden));
  $("generate-form").addEventListener("submit", submit);
  $("tab-generate").addEventListener("click", () => setMode("generate"));
  $("tab-edit").addEventListener("click", () => setMode("edit"));
  $("variations").addEventListener("click", () => runWithImage(variationJob));
  $("edit-images").addEventListener("change", () => setEditImages($("edit-images").files));
  $("mask-image").addEventListener("load", showMaskEditor);
  $("mask-clear").addEventListener("click", () => {
    const canvas = $("mask-canvas");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  });
  paintMask();
  watchDrops();
  $("cancel").addEventListener("click", () => state.running && state.running.abort());
  $("model").addEventListener("change", applyModel);
  $("output-format").addEventListener("change", applyOutputFormat);
  $("prompt").addEventListener("input", updateCount);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("generate-form").requestSubmit();
  });
  $("clear-seed").addEventListener("click", () => { $("seed").value = ""; });
  $("clear-history").addEventListener("click", () => {
    localStorage.removeItem(HISTORY_STORAGE);
    renderHistory();
  });
  refreshKeyChip();
  showKeyPanel(!apiKey());
  renderHistory();
  loadModels();
}

start();
