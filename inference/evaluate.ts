import { PIXELS, type Split } from '../datasets/sources.ts';
import type { Session, Runtime } from '../runtime/ort.ts';

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

/** Evaluates an inference model (image 0..1 -> probabilities) on a split, in batches. */
export async function evaluateInference(rt: Runtime, session: Session, split: Split, batch = 1000): Promise<EvalReport> {
  const { Tensor } = rt.ort;
  const confusion = Array.from({ length: 10 }, () => new Array<number>(10).fill(0));
  const predicted = new Uint8Array(split.count);
  const confidence = new Float32Array(split.count);
  let loss = 0;
  for (let start = 0; start < split.count; start += batch) {
    const n = Math.min(batch, split.count - start);
    const pixels = new Float32Array(n * PIXELS);
    const src = split.images.subarray(start * PIXELS, (start + n) * PIXELS);
    for (let i = 0; i < pixels.length; i++) pixels[i] = src[i] / 255;
    const out = await session.run({ image: new Tensor('float32', pixels, [n, 1, 28, 28]) });
    const p = out.probabilities.data as Float32Array;
    for (let i = 0; i < n; i++) {
      let arg = 0;
      for (let k = 1; k < 10; k++) if (p[i * 10 + k] > p[i * 10 + arg]) arg = k;
      const label = split.labels[start + i];
      loss -= Math.log(Math.max(p[i * 10 + label], 1e-30));
      predicted[start + i] = arg;
      confidence[start + i] = p[i * 10 + arg];
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
