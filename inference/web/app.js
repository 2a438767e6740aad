// The demo page: inference and fine-tuning with onnxruntime-web (WebAssembly), all files from this server.
import * as ort from '/ort/ort.wasm.min.mjs';

ort.env.wasm.wasmPaths = '/ort/';
// WebAssembly threads need a cross-origin isolated page (the server sends COOP/COEP).
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  current: null,
  session: null,
  pixels: null,
  probabilities: null,
  examples: [],
  losses: [],
  tune: null,
  busy: false,
};
// Hooks for the browser tests (and the curious).
window.cnnlab = { state, ready: null };

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * A cnnlab checkpoint (the format of graph-builder/artifacts/checkpoint.ts, which the server
 * encodes): "CNNLABCK", u32 version, u32 header length, a JSON header {meta, tensors}, the
 * tensors' little-endian bytes (8-byte aligned), and a sha256 of everything before it.
 */
async function readCheckpoint(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== 'CNNLABCK') throw new Error('train state: not a cnnlab checkpoint');
  const body = bytes.subarray(0, bytes.length - 32);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', body));
  if (!digest.every((v, i) => v === bytes[bytes.length - 32 + i])) throw new Error('train state: checksum mismatch');
  const headerLength = view.getUint32(12, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLength)));
  const start = Math.ceil((16 + headerLength) / 8) * 8;
  const tensors = {};
  for (const e of header.tensors) {
    const raw = bytes.slice(start + e.offset, start + e.offset + e.length).buffer;
    tensors[e.name] = e.dtype === 'int64' ? new ort.Tensor('int64', new BigInt64Array(raw), e.dims) : new ort.Tensor('float32', new Float32Array(raw), e.dims);
  }
  return tensors;
}

const TYPED = { uint8: Uint8Array, float32: Float32Array, int64: BigInt64Array };

/** Feeds for the per-run inputs the train step's interface lists (symbolic dims from `dims`). */
function feedsFor(inputs, data, dims) {
  const feeds = {};
  for (const i of inputs) {
    const shape = i.shape.map((d) => (typeof d === 'number' ? d : dims[d]));
    const values = data[i.name];
    if (!(values instanceof TYPED[i.dtype]) || values.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`train step input ${i.name}: expected ${i.dtype} [${shape}]`);
    feeds[i.name] = new ort.Tensor(i.dtype, values, shape);
  }
  return feeds;
}

// ---- prediction ----

/** Class probabilities of a batch of images with the current weights (fine-tuned, or the model's own). */
async function probabilitiesOf(image) {
  if (!state.tune?.tuned) return (await state.session.run({ image })).probabilities.data;
  const feeds = { image };
  for (const p of state.tune.paramNames) feeds[p] = state.tune.carried[p];
  return (await state.tune.inference.run(feeds)).probabilities.data;
}

async function predict(pixels) {
  const m = state.current;
  const image = new ort.Tensor('float32', pixels, [1, 1, 28, 28]);
  const p = await probabilitiesOf(image);
  state.pixels = pixels;
  state.probabilities = Array.from(p);
  renderBars(m.classes, state.probabilities);
  drawPreview(pixels);
}

function renderBars(classes, p) {
  const order = p.map((v, i) => i).sort((a, b) => p[b] - p[a]);
  $('top').textContent = classes[order[0]];
  $('bars').innerHTML = '';
  for (const k of order) {
    const row = document.createElement('div');
    row.className = `bar${k === order[0] ? ' top' : ''}`;
    row.innerHTML = `<span class="name"></span><span class="track"><span class="fill" style="width:${(100 * p[k]).toFixed(1)}%"></span></span><span class="pct">${(100 * p[k]).toFixed(1)}%</span>`;
    row.querySelector('.name').textContent = classes[k];
    $('bars').appendChild(row);
  }
}

function drawPreview(pixels) {
  const ctx = $('preview').getContext('2d');
  const img = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(pixels[i] * 255);
    img.data.set([v, v, v, 255], i * 4);
  }
  const tmp = document.createElement('canvas');
  tmp.width = tmp.height = 28;
  tmp.getContext('2d').putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, 0, 0, 56, 56);
}

/** MNIST-style preparation happens on the server (sharp), the same code as `cnnlab predict`. */
async function prepare(blob) {
  const res = await fetch('/api/prepare', { method: 'POST', body: blob, headers: { 'content-type': 'application/octet-stream' } });
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return Float32Array.from(body.pixels);
}

// ---- drawing ----

const pad = $('pad');
const ctx = pad.getContext('2d');
let drawing = false;
let last = null;
let version = 0; // bumped by every stroke
let shown = 0; // the version of the drawing last predicted
let inflight = null;

/** The prediction panel before anything is drawn: what to do, not a blank. */
function showHint() {
  $('top').textContent = '';
  $('bars').innerHTML = '<p class="small hint">Draw a digit (or upload an image) to see what the model predicts.</p>';
}

function clearPad() {
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, pad.width, pad.height);
  showHint();
  state.pixels = null;
  state.probabilities = null;
  shown = version;
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
}

pad.addEventListener('pointerdown', (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  last = point(e);
  stroke(last, last);
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  const p = point(e);
  stroke(last, p);
  last = p;
});
for (const ev of ['pointerup', 'pointercancel']) {
  pad.addEventListener(ev, () => {
    drawing = false;
    predictPad();
  });
}

function stroke(a, b) {
  ctx.strokeStyle = '#000';
  ctx.lineWidth = 20;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(a[0], a[1]);
  ctx.lineTo(b[0], b[1]);
  ctx.stroke();
  version++;
}

/** Live predictions while drawing: one in flight at a time; when it lands, the newest drawing is predicted if it changed. */
function predictPad() {
  if (inflight) return inflight;
  const v = version;
  inflight = new Promise((resolve) => pad.toBlob(resolve, 'image/png'))
    .then(prepare)
    .then(predict)
    .then(() => setStatus(''))
    .catch((err) => setStatus(err.message))
    .finally(() => {
      shown = v;
      inflight = null;
      if (shown !== version && !drawing) predictPad();
    });
  return inflight;
}
setInterval(() => {
  if (drawing && shown !== version) predictPad();
}, 150);

/** Resolves once the prediction on screen is of the drawing on screen (for tests). */
async function settled() {
  while (inflight || shown !== version || drawing) await (inflight ?? new Promise((r) => setTimeout(r, 20)));
}

function setStatus(text) {
  $('status').textContent = text;
}

$('clear').addEventListener('click', clearPad);

// ---- upload and drag-and-drop ----

async function predictFile(file) {
  try {
    setStatus(`reading ${file.name}…`);
    await predict(await prepare(file));
    setStatus(file.name);
  } catch (err) {
    setStatus(err.message);
  }
}
$('file').addEventListener('change', (e) => e.target.files[0] && predictFile(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  if (e.dataTransfer.files[0]) predictFile(e.dataTransfer.files[0]);
});

// ---- model card and gallery ----

/**
 * Milliseconds per image, the median of 5 rounds. A round repeats the run until it lasts 20 ms:
 * the page's clock ticks in 0.1 ms steps in headless Chromium (coarsened against timing attacks),
 * longer than one run of a small model, which a single timed run showed as 0.00 ms.
 */
async function timeInference() {
  const image = new ort.Tensor('float32', new Float32Array(784), [1, 1, 28, 28]);
  const round = async (runs) => {
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) await state.session.run({ image });
    return performance.now() - t0;
  };
  await round(1);
  let runs = 1;
  while (runs < 4096 && (await round(runs)) < 20) runs *= 2;
  const perImage = [];
  for (let i = 0; i < 5; i++) perImage.push((await round(runs)) / runs);
  perImage.sort((a, b) => a - b);
  return { ms: perImage[2], runs };
}

/** 0.045, 1.2, 37: two significant digits, and '< 0.01' below what the card shows. */
function formatMs(ms) {
  if (ms < 0.01) return '< 0.01';
  return ms < 10 ? String(Number(ms.toPrecision(2))) : String(Math.round(ms));
}

function renderCard(m, timing) {
  const rows = [
    ['architecture', m.architecture],
    ['parameters', m.parameters.toLocaleString('en-US')],
    ['dataset', m.dataset],
    ['test accuracy', m.testAccuracy == null ? 'unknown' : `${(100 * m.testAccuracy).toFixed(2)}%`],
    ['inference', `${formatMs(timing.ms)} ms per image (median of 5 rounds of ${timing.runs} run${timing.runs === 1 ? '' : 's'}, wasm, ${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads === 1 ? '' : 's'})`],
    ['fine-tuning', m.fineTuning ? 'available' : 'not for this model'],
    ['file', m.file],
  ];
  $('card').innerHTML = '';
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    $('card').append(dt, dd);
  }
}

async function renderGallery(m) {
  const res = await fetch(`/api/models/${m.id}/samples`);
  const { labels, pixels } = await res.json();
  const bytes = Uint8Array.from(atob(pixels), (c) => c.charCodeAt(0));
  const n = Math.min(24, labels.length);
  const images = new Float32Array(n * 784);
  for (let i = 0; i < n * 784; i++) images[i] = bytes[i] / 255;
  const out = await state.session.run({ image: new ort.Tensor('float32', images, [n, 1, 28, 28]) });
  const p = out.probabilities.data;
  $('gallery').innerHTML = '';
  let mistakes = 0;
  for (let i = 0; i < n; i++) {
    let arg = 0;
    for (let k = 1; k < 10; k++) if (p[i * 10 + k] > p[i * 10 + arg]) arg = k;
    const cell = document.createElement('div');
    cell.className = `sample${arg === labels[i] ? '' : ' wrong'}`;
    mistakes += arg === labels[i] ? 0 : 1;
    const c = document.createElement('canvas');
    c.width = c.height = 28;
    const g = c.getContext('2d');
    const img = g.createImageData(28, 28);
    for (let j = 0; j < 784; j++) img.data.set([bytes[i * 784 + j], bytes[i * 784 + j], bytes[i * 784 + j], 255], j * 4);
    g.putImageData(img, 0, 0);
    const caption = document.createElement('div');
    caption.textContent = `${m.classes[arg]} / ${m.classes[labels[i]]}`;
    cell.append(c, caption);
    $('gallery').appendChild(cell);
  }
  return mistakes;
}

// ---- fine-tuning in the browser ----

async function loadTuning(m) {
  if (state.tune && state.tune.model === m.id) return state.tune;
  setTune('loading the train-step graph…');
  const [stepBytes, inferenceBytes, stateBytes, iface, replay] = await Promise.all([
    fetchBytes(`/api/models/${m.id}/train_step.onnx`),
    fetchBytes(`/api/models/${m.id}/inference_inputs.onnx`),
    fetchBytes(`/api/models/${m.id}/train_state.bin`),
    fetch(`/api/models/${m.id}/train_interface`).then((r) => r.json()),
    fetch(`/api/models/${m.id}/replay`).then((r) => r.json()),
  ]);
  state.tune = {
    model: m.id,
    step: await ort.InferenceSession.create(stepBytes),
    inference: await ort.InferenceSession.create(inferenceBytes),
    initial: stateBytes,
    carried: await readCheckpoint(stateBytes),
    iface,
    paramNames: iface.carried.filter((c) => c.role === 'param' || c.role === 'buffer').map((c) => c.name),
    replay: { labels: replay.labels, pixels: Uint8Array.from(atob(replay.pixels), (c) => c.charCodeAt(0)) },
    tuned: false,
  };
  setTune('');
  return state.tune;
}

/** mulberry32: the replayed images and the dropout seeds are drawn from a seeded sequence, so a session's fine-tuning repeats exactly. */
let tuneState = 0x2545f491;
function tuneDraw() {
  tuneState = (tuneState + 0x6d2b79f5) | 0;
  let t = Math.imul(tuneState ^ (tuneState >>> 15), 1 | tuneState);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** Slots of each fine-tuning batch the examples fill (at least); replayed training images fill three times as many. */
const EXAMPLE_SLOTS = 8;
const REPLAY_RATIO = 3;

/** Accuracy of the current weights (fine-tuned or not) on the served test samples. */
async function sampleAccuracy() {
  const m = state.current;
  const { labels, pixels } = await (await fetch(`/api/models/${m.id}/samples`)).json();
  const bytes = Uint8Array.from(atob(pixels), (c) => c.charCodeAt(0));
  const n = labels.length;
  const image = new ort.Tensor('float32', Float32Array.from(bytes, (v) => v / 255), [n, 1, 28, 28]);
  const p = await probabilitiesOf(image);
  const K = m.classes.length;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let arg = 0;
    for (let k = 1; k < K; k++) if (p[i * K + k] > p[i * K + arg]) arg = k;
    correct += arg === labels[i] ? 1 : 0;
  }
  return correct / n;
}

/** The fine-tuned parameters as safetensors, made by the server's encoder from the page's tensors. */
async function downloadWeights() {
  const m = state.current;
  const t = await loadTuning(m);
  const parts = t.paramNames.map((name) => t.carried[name].data);
  const body = new Uint8Array(parts.reduce((a, d) => a + d.byteLength, 0));
  let at = 0;
  for (const d of parts) {
    body.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  const res = await fetch(`/api/models/${m.id}/weights.safetensors`, { method: 'POST', body });
  if (!res.ok) throw new Error(`download: ${res.status} ${await res.text()}`);
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await res.blob());
  a.download = (res.headers.get('content-disposition') ?? '').match(/filename="(.+)"/)?.[1] ?? 'weights.safetensors';
  a.click();
  URL.revokeObjectURL(a.href);
}

function setTune(text) {
  $('tune-status').textContent = text;
}

/**
 * K steps, each on one batch: the examples (repeated) fill a quarter of it and training images
 * drawn at random the rest, so teaching a drawing does not make the model forget what it knew.
 * lr from the page, momentum 0.9, fresh dropout seeds (from the same seeded sequence).
 */
async function train() {
  const m = state.current;
  if (!m.fineTuning || state.examples.length === 0 || state.busy) return;
  state.busy = true;
  $('train').disabled = true;
  try {
    const t = await loadTuning(m);
    const K = Math.max(1, Math.min(200, Number($('steps').value) || 10));
    const lr = Number($('lr').value) || 0.01;
    const half = Math.max(EXAMPLE_SLOTS, state.examples.length);
    // state.noReplay: the measurement in the browser test compares fine-tuning without it.
    const replayed = state.noReplay ? 0 : Math.min(REPLAY_RATIO * half, t.replay.labels.length);
    const B = half + replayed;
    const images = new Uint8Array(K * B * 784);
    const labels = new Uint8Array(K * B);
    for (let k = 0; k < K; k++) {
      for (let j = 0; j < half; j++) {
        const ex = state.examples[j % state.examples.length];
        for (let i = 0; i < 784; i++) images[(k * B + j) * 784 + i] = Math.round(ex.pixels[i] * 255);
        labels[k * B + j] = ex.label;
      }
      for (let j = half; j < B; j++) {
        const r = Math.floor(tuneDraw() * t.replay.labels.length);
        images.set(t.replay.pixels.subarray(r * 784, (r + 1) * 784), (k * B + j) * 784);
        labels[k * B + j] = t.replay.labels[r];
      }
    }
    const data = {
      images,
      labels,
      lr: new Float32Array(K).fill(lr),
      momentum: new Float32Array(K).fill(0.9),
      dropout_seed: BigInt64Array.from({ length: K }, () => BigInt(Math.floor(tuneDraw() * 2147483646))),
    };
    const feeds = { ...t.carried, ...feedsFor(t.iface.inputs, data, { K, B }) };
    const t0 = performance.now();
    const out = await t.step.run(feeds);
    for (const c of t.iface.carried) t.carried[c.name] = out[c.next];
    t.tuned = true;
    state.losses.push(...out.losses.data);
    drawLosses();
    setTune(`${K} steps on ${state.examples.length} example(s) with ${replayed} replayed training images in ${(performance.now() - t0).toFixed(0)} ms; loss ${out.losses.data[0].toFixed(3)} → ${out.losses.data[K - 1].toFixed(3)}`);
    if (state.pixels) await predict(state.pixels);
  } catch (err) {
    setTune(err.message);
  } finally {
    state.busy = false;
    $('train').disabled = false;
  }
}

function drawLosses() {
  const c = $('loss');
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const L = state.losses;
  if (!L.length) return;
  const max = Math.max(...L, 1e-3);
  g.strokeStyle = '#2a6fdb';
  g.lineWidth = 2;
  g.beginPath();
  L.forEach((v, i) => {
    const x = 8 + ((c.width - 16) * i) / Math.max(1, L.length - 1);
    const y = c.height - 8 - ((c.height - 24) * v) / max;
    if (i) g.lineTo(x, y);
    else g.moveTo(x, y);
  });
  g.stroke();
  g.fillStyle = '#5b6570';
  g.font = '12px sans-serif';
  g.fillText(`loss (max ${max.toFixed(2)}), ${L.length} steps`, 8, 14);
}

$('add').addEventListener('click', () => {
  if (!state.pixels) return setTune('draw or upload a digit first');
  state.examples.push({ pixels: state.pixels, label: Number($('label').value) });
  $('examples').textContent = `${state.examples.length} example${state.examples.length === 1 ? '' : 's'}`;
});
$('train').addEventListener('click', train);
$('download').addEventListener('click', () => downloadWeights().catch((err) => setTune(err.message)));
$('reset').addEventListener('click', async () => {
  if (state.tune) {
    state.tune.carried = await readCheckpoint(state.tune.initial);
    state.tune.tuned = false;
  }
  state.losses = [];
  drawLosses();
  setTune('weights reset to the trained model');
  if (state.pixels) await predict(state.pixels);
});

// ---- model switch ----

async function selectModel(id) {
  const m = state.models.find((x) => x.id === id);
  state.current = m;
  state.session = await ort.InferenceSession.create(`/api/models/${m.id}/inference.onnx`);
  state.tune = null;
  state.examples = [];
  state.losses = [];
  $('examples').textContent = '0 examples';
  drawLosses();
  $('label').innerHTML = m.classes.map((c, i) => `<option value="${i}">${c}</option>`).join('');
  $('add').disabled = $('train').disabled = !m.fineTuning;
  renderCard(m, await timeInference());
  await renderGallery(m);
  if (state.pixels) await predict(state.pixels);
}

async function start() {
  state.models = await (await fetch('/api/models')).json();
  $('model').innerHTML = state.models.map((m) => `<option value="${m.id}">${m.name}</option>`).join('');
  $('model').addEventListener('change', (e) => selectModel(e.target.value));
  clearPad();
  await selectModel(state.models[0].id);
}

window.cnnlab.ready = start();
window.cnnlab.train = train;
window.cnnlab.sampleAccuracy = sampleAccuracy;
window.cnnlab.downloadWeights = downloadWeights;
window.cnnlab.settled = settled;
