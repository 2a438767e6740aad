import { exampleSize, type Split } from '../datasets/sources.ts';
import { InputError } from '../common/errors.ts';
import type { Runtime, Session } from '../runtime/ort.ts';
import { classify, type LoadedModel } from './model.ts';

export interface EvalReport {
  count: number;
  loss: number;
  accuracy: number;
  perClass: number[];
  /** confusion[true][predicted] */
  confusion: number[][];
  predicted: Uint8Array;
  /** Probability of the predicted class, per example. */
  confidence: Float32Array;
}

/** Evaluates a classifier on a split, in batches (see classify for how inputs and outputs are read). */
export async function evaluateInference(rt: Runtime, session: Session, model: LoadedModel, split: Split, batch = 1000): Promise<EvalReport> {
  const K = model.classes.length;
  const confusion = Array.from({ length: K }, () => new Array<number>(K).fill(0));
  const predicted = new Uint8Array(split.count);
  const confidence = new Float32Array(split.count);
  let loss = 0;
  for (let start = 0; start < split.count; start += batch) {
    const n = Math.min(batch, split.count - start);
    const size = exampleSize(split.shape);
    const pixels = new Float32Array(n * size);
    const src = split.images.subarray(start * size, (start + n) * size);
    for (let i = 0; i < pixels.length; i++) pixels[i] = src[i] / 255;
    const p = await classify(rt, session, model, pixels, n, split.shape);
    for (let i = 0; i < n; i++) {
      let arg = 0;
      for (let k = 1; k < K; k++) if (p[i * K + k] > p[i * K + arg]) arg = k;
      const label = split.labels[start + i];
      if (label >= K) throw new InputError(`${model.path}: scores ${K} classes, the dataset has label ${label}`);
      loss -= Math.log(Math.max(p[i * K + label], 1e-30));
      predicted[start + i] = arg;
      confidence[start + i] = p[i * K + arg];
      confusion[label][arg]++;
    }
  }
  const perClass = confusion.map((row, k) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total ? row[k] / total : NaN;
  });
  const correct = confusion.reduce((a, row, k) => a + row[k], 0);
  return { count: split.count, loss: loss / split.count, accuracy: correct / split.count, perClass, confusion, predicted, confidence };
}

export function confusionTable(r: EvalReport, classes: readonly string[]): string {
  const short = classes.map((c) => c.slice(0, 6));
  const w = Math.max(6, ...short.map((s) => s.length)) + 1;
  const head = `${'true \\ pred'.padEnd(12)}${short.map((s) => s.padStart(w)).join('')}`;
  const rows = r.confusion.map((row, k) => `${short[k].padEnd(12)}${row.map((v) => String(v).padStart(w)).join('')}`);
  return [head, ...rows].join('\n');
}
