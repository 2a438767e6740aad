/**
 * New classes on a frozen backbone: the user names the classes and adds examples (camera
 * snapshots, uploads, the image on screen); each example's features are computed once with the
 * features graph; a new head's train step runs over them; predictions then go through the
 * features graph and the trained head.
 */
import { MAX_HEAD_CLASSES } from './api.ts';
import { $, drawLosses, fetchBytes, saveBlob } from './dom.ts';
import { byteDims, pixelCount, toBytes } from './images.ts';
import { type Backend, ort, sessionOptions, targetQuery } from './ort.ts';
import { current, exclusively, state } from './state.ts';
import { carriedFrom, loadTrainer, parameterBytes, trainedProbabilities, trainFor } from './steps.ts';

export function setHeadStatus(text: string): void {
  $('head-status').textContent = text;
}

/** Whether predictions go through the trained new head. */
export function headReady(): boolean {
  return Boolean(state.head.tune?.trained) && state.head.tune!.classes === state.head.names.length;
}

/** The features of n images given as bytes (the features graph's `images` input). */
async function featuresOf(bytes: Uint8Array, n: number): Promise<ort.Tensor> {
  const m = current();
  state.head.features ??= await ort.InferenceSession.create(await fetchBytes(`/api/models/${m.id}/features.onnx${targetQuery()}`), sessionOptions());
  return (await state.head.features.run({ images: new ort.Tensor('uint8', bytes, [n, ...byteDims(m.inputShape)]) })).features;
}

/** Probabilities over the new classes of n images (planar pixels 0..1). */
export async function headProbabilities(pixels: Float32Array, n: number): Promise<Float32Array> {
  return trainedProbabilities(state.head.tune!, { features: await featuresOf(toBytes(pixels), n) });
}

/** The class names typed in (comma-separated); other classes start over (no examples, a new head). */
export function readNames(): void {
  const names = $<HTMLInputElement>('head-classes').value.split(',').map((s) => s.trim()).filter(Boolean).slice(0, MAX_HEAD_CLASSES);
  if (names.join('\n') !== state.head.names.join('\n')) {
    state.head.examples = [];
    state.head.losses = [];
    state.head.tune = null;
    drawLosses($<HTMLCanvasElement>('head-loss'), []);
  }
  state.head.names = names;
  const select = $<HTMLSelectElement>('head-class');
  const chosen = select.selectedIndex;
  select.innerHTML = names.map(() => '<option></option>').join('');
  select.querySelectorAll('option').forEach((o, i) => {
    o.textContent = names[i];
    o.value = String(i);
  });
  select.selectedIndex = Math.max(0, Math.min(chosen, names.length - 1));
  showCounts();
}

function showCounts(): void {
  const counts = state.head.names.map((name, i) => `${name}: ${state.head.examples.filter((e) => e.label === i).length}`);
  $('head-examples').textContent = counts.length ? `examples ${counts.join(', ')}` : 'name two or more classes';
}

/** Adds an image (planar pixels 0..1 of the model's input shape) as an example of class `label`, its features computed now. */
export async function addHeadExample(pixels: Float32Array, label = Number($<HTMLSelectElement>('head-class').value)): Promise<void> {
  if (state.head.names.length < 2) throw new Error('name two or more classes first');
  if (pixels.length !== pixelCount(current().inputShape)) throw new Error('the image is not of the model’s input shape');
  const bytes = toBytes(pixels);
  const features = (await featuresOf(bytes, 1)).data as Float32Array;
  state.head.examples.push({ bytes, label, features: features.slice() });
  showCounts();
}

/** Removes the last example (the tests take back a snapshot of the wrong frame). */
export function removeLastHeadExample(): void {
  state.head.examples.pop();
  showCounts();
}

/**
 * K steps of the new head on every example's features (one batch of all of them per step), at
 * the page's lr, momentum 0.9. The first run loads the head's train step for the class count.
 */
export async function trainHead(): Promise<void> {
  const h = state.head;
  const n = h.names.length;
  if (n < 2) return;
  for (let k = 0; k < n; k++) if (!h.examples.some((e) => e.label === k)) return setHeadStatus(`add an example of ${h.names[k]} first`);
  await exclusively('head-train', setHeadStatus, async () => {
    if (!h.tune || h.tune.classes !== n) {
      setHeadStatus('loading the head’s train step…');
      h.tune = { ...(await loadTrainer(`/api/models/${current().id}/head/${n}`, 'inference.onnx')), classes: n, trained: false };
    }
    const K = Math.max(1, Math.min(500, Number($<HTMLInputElement>('head-steps').value) || 30));
    const B = h.examples.length;
    const { losses, ms } = await trainFor(h.tune, ...headBatches(K), K, B, headLr());
    h.tune.trained = true;
    h.losses.push(...losses);
    drawLosses($<HTMLCanvasElement>('head-loss'), h.losses);
    setHeadStatus(`${K} steps of the new head on ${B} example(s) in ${ms.toFixed(0)} ms; loss ${losses[0].toFixed(3)} → ${losses[K - 1].toFixed(3)}`);
    await state.refresh();
  });
}

/** The page's lr for the head. */
function headLr(): number {
  return Number($<HTMLInputElement>('head-lr').value) || 0.05;
}

/** K batches of every example's features and labels (one batch of all of them per step). */
function headBatches(K: number): [Float32Array, Uint8Array] {
  const examples = state.head.examples;
  const B = examples.length;
  const F = examples[0].features.length;
  const images = new Float32Array(K * B * F);
  const labels = new Uint8Array(K * B);
  for (let k = 0; k < K; k++) {
    examples.forEach((e, j) => {
      images.set(e.features, (k * B + j) * F);
      labels[k * B + j] = e.label;
    });
  }
  return [images, labels];
}

/**
 * A new head's K steps on the examples, twice in a row, on `on` (its graphs and sessions), the
 * page's head untouched: the first run's losses and both runs' milliseconds (the first includes
 * WebGPU's shader compilation). The tests compare the backends' first losses.
 */
export async function headStepsOn(on: Backend['kind'], K: number): Promise<{ losses: number[]; ms: [number, number] }> {
  const t = await loadTrainer(`/api/models/${current().id}/head/${state.head.names.length}`, 'inference.onnx', on);
  const B = state.head.examples.length;
  const first = await trainFor(t, ...headBatches(K), K, B, headLr());
  const second = await trainFor(t, ...headBatches(K), K, B, headLr());
  return { losses: Array.from(first.losses), ms: [first.ms, second.ms] };
}

/** Back to the model's own classes (the examples stay; training again starts from a new head). */
export async function resetHead(): Promise<void> {
  const t = state.head.tune;
  if (t) {
    t.carried = await carriedFrom(t.initial, 'head train_state.bin');
    t.trained = false;
  }
  state.head.losses = [];
  drawLosses($<HTMLCanvasElement>('head-loss'), []);
  setHeadStatus('predicting the model’s own classes again');
  await state.refresh();
}

/** The whole model with the trained head, as an ONNX file the server assembles (backbone as served + the page's head). */
export async function downloadHeadModel(): Promise<void> {
  const t = state.head.tune;
  if (!t?.trained) throw new Error('train the new head first');
  const url = `/api/models/${current().id}/head/${t.classes}/model.onnx?classes=${encodeURIComponent(JSON.stringify(state.head.names))}`;
  const res = await fetch(url, { method: 'POST', body: parameterBytes(t) });
  if (!res.ok) throw new Error(`download: ${res.status} ${await res.text()}`);
  saveBlob(await res.blob(), res.headers.get('content-disposition'), 'fine-tuned.onnx');
}

/** The panel for a newly selected model: its features graph is another, the head starts over. */
export function resetHeadPanel(): void {
  state.head = { names: [], examples: [], losses: [], features: null, tune: null };
  const m = current();
  $('head-panel').hidden = m.headTuning !== true;
  drawLosses($<HTMLCanvasElement>('head-loss'), []);
  setHeadStatus('');
  readNames();
}
