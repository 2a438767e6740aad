/**
 * Whole-model fine-tuning (a digit model with its training images): the model's own train step
 * on the user's drawings, with training images replayed beside them so it does not forget.
 */
import type { LabelledImages, ModelCard } from './api.ts';
import { $, argmax, drawLosses, fetchJson, fromBase64, saveBlob } from './dom.ts';
import { pixelCount, toBytes } from './images.ts';
import { probabilitiesOf } from './predict.ts';
import { current, exclusively, state, type WholeTune } from './state.ts';
import { carriedFrom, draw, loadTrainer, parameterBytes, trainFor } from './steps.ts';

/** Slots of each fine-tuning batch the examples fill (at least); replayed training images fill three times as many. */
const EXAMPLE_SLOTS = 8;
const REPLAY_RATIO = 3;

export function setTune(text: string): void {
  $('tune-status').textContent = text;
}

async function loadTuning(m: ModelCard): Promise<WholeTune> {
  if (state.tune && state.tune.model === m.id) return state.tune;
  setTune('loading the train-step graph…');
  const [trainer, replay] = await Promise.all([loadTrainer(`/api/models/${m.id}`, 'inference_inputs.onnx'), fetchJson<LabelledImages>(`/api/models/${m.id}/replay`)]);
  state.tune = { ...trainer, model: m.id, replay: { labels: replay.labels, pixels: fromBase64(replay.pixels) }, tuned: false };
  setTune('');
  return state.tune;
}

/** Accuracy of the current weights (fine-tuned or not) on the served test samples. */
export async function sampleAccuracy(): Promise<number> {
  const m = current();
  const { labels, pixels } = await fetchJson<LabelledImages>(`/api/models/${m.id}/samples`);
  const n = labels.length;
  const { p } = await probabilitiesOf(Float32Array.from(fromBase64(pixels), (v) => v / 255), n);
  let correct = 0;
  for (let i = 0; i < n; i++) correct += argmax(p, m.classes.length, i) === labels[i] ? 1 : 0;
  return correct / n;
}

/** The fine-tuned parameters as safetensors, made by the server's encoder from the page's tensors. */
export async function downloadWeights(): Promise<void> {
  const m = current();
  const t = await loadTuning(m);
  const res = await fetch(`/api/models/${m.id}/weights.safetensors`, { method: 'POST', body: parameterBytes(t) });
  if (!res.ok) throw new Error(`download: ${res.status} ${await res.text()}`);
  saveBlob(await res.blob(), res.headers.get('content-disposition'), 'weights.safetensors');
}

/** K batches of B images: the examples (repeated) first in each, replayed training images drawn at random the rest. */
function batches(t: WholeTune, K: number, half: number, replayed: number): { images: Uint8Array; labels: Uint8Array } {
  const size = pixelCount(current().inputShape);
  const B = half + replayed;
  const images = new Uint8Array(K * B * size);
  const labels = new Uint8Array(K * B);
  const examples = state.examples.map((e) => toBytes(e.pixels));
  for (let k = 0; k < K; k++) {
    for (let j = 0; j < half; j++) {
      images.set(examples[j % examples.length], (k * B + j) * size);
      labels[k * B + j] = state.examples[j % examples.length].label;
    }
    for (let j = half; j < B; j++) {
      const r = Math.floor(draw() * t.replay.labels.length);
      images.set(t.replay.pixels.subarray(r * size, (r + 1) * size), (k * B + j) * size);
      labels[k * B + j] = t.replay.labels[r];
    }
  }
  return { images, labels };
}

/**
 * K steps, each on one batch: the examples (repeated) fill a quarter of it and training images
 * drawn at random the rest, so teaching a drawing does not make the model forget what it knew.
 * lr from the page, momentum 0.9, fresh dropout seeds (from the same seeded sequence).
 */
export async function train(): Promise<void> {
  const m = current();
  if (!m.fineTuning || state.examples.length === 0) return;
  await exclusively('train', setTune, async () => {
    const t = await loadTuning(m);
    const K = Math.max(1, Math.min(200, Number($<HTMLInputElement>('steps').value) || 10));
    const lr = Number($<HTMLInputElement>('lr').value) || 0.01;
    const half = Math.max(EXAMPLE_SLOTS, state.examples.length);
    // state.noReplay: the measurement in the browser test compares fine-tuning without it.
    const replayed = state.noReplay ? 0 : Math.min(REPLAY_RATIO * half, t.replay.labels.length);
    const { images, labels } = batches(t, K, half, replayed);
    const { losses, ms } = await trainFor(t, images, labels, K, half + replayed, lr);
    t.tuned = true;
    state.losses.push(...losses);
    drawLosses($<HTMLCanvasElement>('loss'), state.losses);
    setTune(`${K} steps on ${state.examples.length} example(s) with ${replayed} replayed training images in ${ms.toFixed(0)} ms; loss ${losses[0].toFixed(3)} → ${losses[K - 1].toFixed(3)}`);
    await state.refresh();
  });
}

/** Back to the served weights. */
export async function resetTuning(): Promise<void> {
  if (state.tune) {
    state.tune.carried = await carriedFrom(state.tune.initial, 'train_state.bin');
    state.tune.tuned = false;
  }
  state.losses = [];
  drawLosses($<HTMLCanvasElement>('loss'), state.losses);
  setTune('weights reset to the trained model');
  await state.refresh();
}

/** Adds the image on screen as an example of the label chosen. */
export function addExample(): void {
  if (!state.pixels) return setTune('draw or upload a digit first');
  state.examples.push({ pixels: state.pixels, label: Number($<HTMLSelectElement>('label').value) });
  $('examples').textContent = `${state.examples.length} example${state.examples.length === 1 ? '' : 's'}`;
}

/** The panel for a newly selected model (its classes; nothing tuned yet). */
export function resetPanel(m: ModelCard): void {
  state.tune = null;
  state.examples = [];
  state.losses = [];
  $('examples').textContent = '0 examples';
  drawLosses($<HTMLCanvasElement>('loss'), state.losses);
  $('label').innerHTML = m.classes.map((c, i) => `<option value="${i}"></option>`).join('');
  $('label').querySelectorAll('option').forEach((o, i) => (o.textContent = m.classes[i]));
  $('tune-panel').hidden = !m.fineTuning;
}
