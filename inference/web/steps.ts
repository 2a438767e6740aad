/**
 * Train steps in the page: the server's train-step graph, its interface and first state, run
 * with onnxruntime-web. Feeds are built by runtime/step-runner.ts's feedsFor and checkpoints read
 * by the checkpoint codec, as in Node.
 */
import { decodeCheckpointAsync } from '../../graph-builder/artifacts/checkpoint-codec.ts';
import type { StepInputs, TrainStepInterface } from '../../graph-builder/artifacts/train-step.ts';
import { HASH_MODULUS } from '../../graph-builder/train-mode.ts';
import { feedsFor } from '../../runtime/step-runner.ts';
import { fetchBytes, fetchJson } from './dom.ts';
import { backend, type Backend, feedsOrt, ort, sessionOptions, targetQuery } from './ort.ts';

export type Carried = Record<string, ort.Tensor>;

/** A train step ready to run: its session, the inference graph taking its parameters, and the carried tensors. */
export interface Trainer {
  step: ort.InferenceSession;
  inference: ort.InferenceSession;
  /** The first state's bytes (Reset decodes them again). */
  initial: Uint8Array;
  carried: Carried;
  iface: TrainStepInterface;
  /** The carried parameters and buffers, in the interface's order (what the downloads send). */
  paramNames: string[];
}

/** A checkpoint's tensors as onnxruntime-web tensors. */
export async function carriedFrom(bytes: Uint8Array, file: string): Promise<Carried> {
  const ckpt = await decodeCheckpointAsync(bytes, file);
  const out: Carried = {};
  for (const [name, t] of ckpt.tensors) out[name] = t.dtype === 'int64' ? new ort.Tensor('int64', t.data, t.dims) : new ort.Tensor('float32', t.data, t.dims);
  return out;
}

/** Loads a train step from `base` (train_step.onnx, `inference`, train_state.bin, train_interface under it), its graphs for and sessions on `on` (the page's backend unless given). */
export async function loadTrainer(base: string, inference: string, on: Backend['kind'] = backend.kind): Promise<Trainer> {
  const q = targetQuery(on);
  const [stepBytes, inferenceBytes, initial, iface] = await Promise.all([
    fetchBytes(`${base}/train_step.onnx${q}`),
    fetchBytes(`${base}/${inference}${q}`),
    fetchBytes(`${base}/train_state.bin${q}`),
    fetchJson<TrainStepInterface>(`${base}/train_interface${q}`),
  ]);
  return {
    step: await ort.InferenceSession.create(stepBytes, sessionOptions(on)),
    inference: await ort.InferenceSession.create(inferenceBytes, sessionOptions(on)),
    initial,
    carried: await carriedFrom(initial, `${base}/train_state.bin`),
    iface,
    paramNames: iface.carried.filter((c) => c.role === 'param' || c.role === 'buffer').map((c) => c.name),
  };
}

/** Runs K steps of B examples each; the carried tensors move on; returns each step's loss. */
export async function runSteps(t: Trainer, inputs: StepInputs, K: number, B: number): Promise<Float32Array> {
  const feeds = { ...t.carried, ...feedsFor(feedsOrt(), t.iface.inputs, { ...inputs }, { K, B }) };
  const out = await t.step.run(feeds);
  for (const c of t.iface.carried) t.carried[c.name] = out[c.next];
  return out.losses.data as Float32Array;
}

/** K steps at `lr` (momentum 0.9, fresh dropout seeds) on K batches of B examples: each step's loss, and the milliseconds they took. */
export async function trainFor(t: Trainer, images: StepInputs['images'], labels: Uint8Array, K: number, B: number, lr: number): Promise<{ losses: Float32Array; ms: number }> {
  const t0 = performance.now();
  const losses = await runSteps(t, { images, labels, lr: new Float32Array(K).fill(lr), momentum: new Float32Array(K).fill(0.9), dropout_seed: dropoutSeeds(K) }, K, B);
  return { losses, ms: performance.now() - t0 };
}

/** The inference graph's probabilities for `input` (its name and tensor) with the trainer's current parameters. */
export async function trainedProbabilities(t: Trainer, input: Record<string, ort.Tensor>): Promise<Float32Array> {
  const feeds = { ...input };
  for (const p of t.paramNames) feeds[p] = t.carried[p];
  return (await t.inference.run(feeds)).probabilities.data as Float32Array;
}

/** The trainer's parameters and buffers as one float32 byte string, in the interface's order (the server's download routes read this). */
export function parameterBytes(t: Trainer): Uint8Array<ArrayBuffer> {
  const parts = t.paramNames.map((name) => t.carried[name].data as Float32Array);
  const body = new Uint8Array(parts.reduce((a, d) => a + d.byteLength, 0));
  let at = 0;
  for (const d of parts) {
    body.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return body;
}

/** mulberry32: replayed images and dropout seeds come from a seeded sequence, so a session's fine-tuning repeats exactly. */
let drawState = 0x2545f491;
export function draw(): number {
  drawState = (drawState + 0x6d2b79f5) | 0;
  let t = Math.imul(drawState ^ (drawState >>> 15), 1 | drawState);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** K dropout seeds in the range the train step takes (0..HASH_MODULUS - 1, exclusive). */
export function dropoutSeeds(K: number): BigInt64Array {
  return BigInt64Array.from({ length: K }, () => BigInt(Math.floor(draw() * (HASH_MODULUS - 1))));
}
