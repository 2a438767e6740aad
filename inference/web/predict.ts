/** Predictions of the image on screen: the model's own graph, or its fine-tuned weights, or the backbone with a new head. */
import type { Prepared } from './api.ts';
import { $ } from './dom.ts';
import { headProbabilities, headReady } from './head.ts';
import { drawPlanes, type ImageShape } from './images.ts';
import { ort } from './ort.ts';
import { current, state } from './state.ts';
import { trainedProbabilities } from './steps.ts';

/** An image prepared on the server as `cnnlab predict` prepares it for this model (its resizing and channel order, or MNIST's digit preparation). */
export async function prepare(blob: Blob): Promise<{ pixels: Float32Array; shape: ImageShape }> {
  const res = await fetch(`/api/models/${current().id}/prepare`, { method: 'POST', body: blob, headers: { 'content-type': 'application/octet-stream' } });
  const body = (await res.json().catch(() => ({ error: `HTTP ${res.status}` }))) as Prepared;
  if ('error' in body) throw new Error(body.error);
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return { pixels: Float32Array.from(body.pixels), shape: body.shape };
}

/** Class probabilities [n, classes] of n images (planar pixels 0..1 of the model's input shape), and the classes' names. */
export async function probabilitiesOf(pixels: Float32Array, n: number): Promise<{ p: Float32Array; classes: string[] }> {
  const m = current();
  if (headReady()) return { p: await headProbabilities(pixels, n), classes: state.head.names };
  const image = new ort.Tensor('float32', pixels, [n, ...m.inputShape]);
  if (state.tune?.tuned) return { p: await trainedProbabilities(state.tune, { image }), classes: m.classes };
  return { p: (await state.session!.run({ image })).probabilities.data as Float32Array, classes: m.classes };
}

/** Predicts an image (`frameMean`: the mean colour of the camera frame it is, if one), shows the bars and what the model sees. */
export async function predict(pixels: Float32Array, shape: ImageShape = current().inputShape, frameMean: [number, number, number] | null = null): Promise<void> {
  const { p, classes } = await probabilitiesOf(pixels, 1);
  state.frameMean = frameMean;
  state.pixels = pixels;
  state.shape = shape;
  state.probabilities = Array.from(p);
  state.shownClasses = classes;
  renderBars(classes, state.probabilities);
  drawPlanes($<HTMLCanvasElement>('preview'), pixels, shape, 1, current().bgr);
}

function renderBars(classes: string[], p: number[]): void {
  const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a]);
  $('top').textContent = classes[order[0]];
  const bars = $('bars');
  bars.innerHTML = '';
  for (const k of order.slice(0, 10)) {
    const row = document.createElement('div');
    row.className = `bar${k === order[0] ? ' top' : ''}`;
    row.innerHTML = `<span class="name"></span><span class="track"><span class="fill" style="width:${(100 * p[k]).toFixed(1)}%"></span></span><span class="pct">${(100 * p[k]).toFixed(1)}%</span>`;
    row.querySelector('.name')!.textContent = classes[k];
    bars.appendChild(row);
  }
}

/** The prediction panel before anything is shown: what to do, not a blank. */
export function showHint(): void {
  $('top').textContent = '';
  const what = (state.current?.drawing ?? true) ? 'Draw a digit (or upload an image, or start the camera)' : 'Upload an image or start the camera';
  $('bars').innerHTML = `<p class="small hint">${what} to see what the model predicts.</p>`;
  state.pixels = null;
  state.probabilities = null;
}

export function setStatus(text: string): void {
  $('status').textContent = text;
}
