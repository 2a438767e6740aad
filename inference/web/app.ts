/**
 * The demo page: predictions (drawing pad for digit models, uploads, the camera), the model card
 * and test samples, and fine-tuning in the browser (the whole model, or a new head for new
 * classes), all with onnxruntime-web (its WebGPU build where the browser has an adapter, else WebAssembly) and files from this server.
 */
import type { LabelledImages, ModelCard } from './api.ts';
import { Camera } from './camera.ts';
import { $, argmax, fetchJson, fromBase64 } from './dom.ts';
import { addHeadExample, downloadHeadModel, headStepsOn, readNames, removeLastHeadExample, resetHead, resetHeadPanel, setHeadStatus, trainHead } from './head.ts';
import { drawPlanes, pixelCount } from './images.ts';
import { backend, backendName, loadOrt, ort, sessionOptions, targetQuery } from './ort.ts';
import { clearPad, settled, setUpPad } from './pad.ts';
import { predict, prepare, setStatus, showHint } from './predict.ts';
import { current, state } from './state.ts';
import { addExample, downloadWeights, resetPanel, resetTuning, sampleAccuracy, setTune, train } from './tune.ts';

// ---- uploads and the camera ----

async function predictFile(file: File): Promise<void> {
  try {
    setStatus(`reading ${file.name}…`);
    const { pixels, shape } = await prepare(file);
    await predict(pixels, shape);
    setStatus(file.name);
  } catch (err) {
    setStatus((err as Error).message);
  }
}

const camera = new Camera($<HTMLVideoElement>('video'));
/**
 * Milliseconds between live predictions of camera frames (each waits for the one before). A
 * frame's PNG, the server's preparation and the 3x32x32 ResNet fixture took about 110 ms a frame
 * in headless Chromium on 2 busy cores: 250 ms apart leaves the page responsive at 2-3 a second.
 */
const LIVE_MS = 250;

/** Predicts the camera's frames while it runs: one at a time, LIVE_MS apart. */
async function live(): Promise<void> {
  while (camera.running) {
    try {
      if (!state.busy) {
        const { blob, mean } = await camera.frame();
        const { pixels, shape } = await prepare(blob);
        await predict(pixels, shape, mean);
        setStatus('camera: live');
      }
    } catch (err) {
      setStatus((err as Error).message);
    }
    await new Promise((r) => setTimeout(r, LIVE_MS));
  }
}

async function toggleCamera(): Promise<void> {
  if (camera.running) {
    camera.stop();
    $('camera').textContent = 'Start camera';
    $('video').hidden = true;
    return setStatus('camera off');
  }
  try {
    await camera.start();
    $('camera').textContent = 'Stop camera';
    $('video').hidden = false;
    void live();
  } catch (err) {
    setStatus(`camera: ${(err as Error).message}`);
  }
}

/** A camera snapshot as an example of the class chosen; returns the frame's mean colour. */
async function addSnapshot(label?: number): Promise<[number, number, number]> {
  const { blob, mean } = await camera.frame();
  const { pixels } = await prepare(blob);
  await addHeadExample(pixels, label);
  return mean;
}

function setUpInputs(): void {
  $<HTMLInputElement>('file').addEventListener('change', (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (file) void predictFile(file);
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const file = e.dataTransfer?.files[0];
    if (file) void predictFile(file);
  });
  $('camera').addEventListener('click', () => void toggleCamera());
}

// ---- model card and gallery ----

/**
 * Milliseconds per image, the median of 5 rounds. A round repeats the run until it lasts 20 ms:
 * the page's clock ticks in 0.1 ms steps in headless Chromium (coarsened against timing attacks),
 * longer than one run of a small model, which a single timed run showed as 0.00 ms.
 */
async function timeInference(m: ModelCard): Promise<{ ms: number; runs: number }> {
  const image = new ort.Tensor('float32', new Float32Array(pixelCount(m.inputShape)), [1, ...m.inputShape]);
  const round = async (runs: number) => {
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) await state.session!.run({ image });
    return performance.now() - t0;
  };
  await round(1);
  let runs = 1;
  while (runs < 4096 && (await round(runs)) < 20) runs *= 2;
  const perImage: number[] = [];
  for (let i = 0; i < 5; i++) perImage.push((await round(runs)) / runs);
  perImage.sort((a, b) => a - b);
  return { ms: perImage[2], runs };
}

/** 0.045, 1.2, 37: two significant digits, and '< 0.01' below what the card shows. */
function formatMs(ms: number): string {
  if (ms < 0.01) return '< 0.01';
  return ms < 10 ? String(Number(ms.toPrecision(2))) : String(Math.round(ms));
}

function renderCard(m: ModelCard, timing: { ms: number; runs: number }): void {
  const threads = ort.env.wasm.numThreads ?? 1;
  const rows = [
    ['architecture', m.architecture],
    ['parameters', m.parameters.toLocaleString('en-US')],
    ['dataset', m.dataset],
    ['input', `${m.inputShape.join('x')}${m.bgr ? ' (BGR)' : ''}`],
    ['test accuracy', m.testAccuracy == null ? 'unknown' : `${(100 * m.testAccuracy).toFixed(2)}%`],
    ['inference', `${formatMs(timing.ms)} ms per image (median of 5 rounds of ${timing.runs} run${timing.runs === 1 ? '' : 's'}, ${backend.kind === 'webgpu' ? backendName() : `wasm, ${threads} thread${threads === 1 ? '' : 's'}`})`],
    ['fine-tuning', m.fineTuning ? 'available' : 'not for this model'],
    ['new classes', m.headTuning === true ? 'available (a new head on its features)' : `not for this model (${m.headTuning})`],
    ['file', m.file],
  ];
  const card = $('card');
  card.innerHTML = '';
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    card.append(dt, dd);
  }
}

/** The first test samples with the model's predictions, mistakes marked. */
async function renderGallery(m: ModelCard): Promise<void> {
  $('gallery-panel').hidden = m.samples === 0;
  $('gallery').innerHTML = '';
  if (m.samples === 0) return;
  const { labels, pixels } = await fetchJson<LabelledImages>(`/api/models/${m.id}/samples`);
  const bytes = fromBase64(pixels);
  const size = pixelCount(m.inputShape);
  const n = Math.min(24, labels.length);
  const out = await state.session!.run({ image: new ort.Tensor('float32', Float32Array.from(bytes.subarray(0, n * size), (v) => v / 255), [n, ...m.inputShape]) });
  const p = out.probabilities.data as Float32Array;
  for (let i = 0; i < n; i++) {
    const arg = argmax(p, m.classes.length, i);
    const cell = document.createElement('div');
    cell.className = `sample${arg === labels[i] ? '' : ' wrong'}`;
    const c = document.createElement('canvas');
    drawPlanes(c, bytes.subarray(i * size, (i + 1) * size), m.inputShape, 255, m.bgr);
    const caption = document.createElement('div');
    caption.textContent = `${m.classes[arg]} / ${m.classes[labels[i]]}`;
    cell.append(c, caption);
    $('gallery').appendChild(cell);
  }
}

// ---- model switch ----

async function selectModel(id: string): Promise<void> {
  const m = state.models.find((x) => x.id === id)!;
  state.current = m;
  state.session = await ort.InferenceSession.create(`/api/models/${m.id}/inference.onnx${targetQuery()}`, sessionOptions());
  resetPanel(m);
  resetHeadPanel();
  $('draw-panel').classList.toggle('no-pad', !m.drawing);
  $('input-size').textContent = m.inputShape.join('x');
  if (!m.drawing || !state.pixels || state.shape?.join('x') !== m.inputShape.join('x')) clearPad();
  renderCard(m, await timeInference(m));
  await renderGallery(m);
  await state.refresh();
}

function setUpTuning(): void {
  $('add').addEventListener('click', addExample);
  $('train').addEventListener('click', () => void train());
  $('download').addEventListener('click', () => downloadWeights().catch((err: Error) => setTune(err.message)));
  $('reset').addEventListener('click', () => void resetTuning());
  $('head-classes').addEventListener('change', readNames);
  const report = (p: Promise<unknown>) => p.catch((err: Error) => setHeadStatus(err.message));
  $('head-snap').addEventListener('click', () => void report(addSnapshot()));
  $('head-add').addEventListener('click', () => void report(state.pixels ? addHeadExample(state.pixels) : Promise.reject(new Error('upload an image or draw first'))));
  $<HTMLInputElement>('head-files').addEventListener('change', (e) => {
    const files = [...((e.target as HTMLInputElement).files ?? [])];
    void report((async () => {
      for (const f of files) await addHeadExample((await prepare(f)).pixels);
    })());
  });
  $('head-train').addEventListener('click', () => void trainHead());
  $('head-reset').addEventListener('click', () => void resetHead());
  $('head-download').addEventListener('click', () => void report(downloadHeadModel()));
}

async function start(): Promise<void> {
  await loadOrt();
  state.models = await fetchJson<ModelCard[]>('/api/models');
  const select = $<HTMLSelectElement>('model');
  select.innerHTML = state.models.map(() => '<option></option>').join('');
  select.querySelectorAll('option').forEach((o, i) => {
    o.value = state.models[i].id;
    o.textContent = state.models[i].name;
  });
  select.addEventListener('change', () => void selectModel(select.value));
  state.refresh = async () => {
    if (state.pixels && state.shape?.join('x') === current().inputShape.join('x')) await predict(state.pixels, state.shape);
    else showHint();
  };
  $('backend').textContent = `training on ${backendName()}`;
  if (backend.reason) $('backend').title = `not WebGPU: ${backend.reason}`;
  setUpPad();
  setUpInputs();
  setUpTuning();
  await selectModel(state.models[0].id);
}

/** Hooks for the browser tests (and the curious). */
const hooks = {
  state,
  /** The backend the page chose at start ('webgpu' with the adapter's name, or 'wasm' and why). */
  get backend() {
    return backend;
  },
  ready: start(),
  train,
  sampleAccuracy,
  downloadWeights,
  settled,
  camera: { toggle: toggleCamera, addSnapshot, removeLast: removeLastHeadExample },
  head: { train: trainHead, download: downloadHeadModel, stepsOn: headStepsOn },
};
(window as unknown as { cnnlab: typeof hooks }).cnnlab = hooks;
