/**
 * The frozen-backbone fast path's features: each image's output of the features graph
 * (graph-builder/split.ts), computed once per split and cached on disk beside the image-folder
 * caches (<cache>/features/), so the epochs, and the next run, train the head on them.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/files.ts';
import { cacheRoot, exampleSize, type Split } from '../datasets/sources.ts';
import { byteImageDims, elementCount } from '../graph-builder/model.ts';
import type { Runtime, Session } from '../runtime/ort.ts';

/** A split's features: count x shape float32 values, and its labels. */
export interface FeatureSplit {
  features: Float32Array;
  labels: Uint8Array;
  count: number;
  /** Per-example shape, e.g. [1280]. */
  shape: number[];
}

const MAGIC = 'CNNLABFT';
/** Bump when the file layout changes. */
const VERSION = 1;

/**
 * Images per run of the features graph. MobileNetV2 at 224x224 on 2 cores: 32 and 64 run at the
 * same images/s; larger batches only hold more activations (~100 MB per 32 images).
 */
export const FEATURE_BATCH = 32;

/**
 * The cache key: the features graph's bytes (its nodes, its frozen parameters, the
 * preprocessing baked into it) and the split's pixels and labels, so a changed model, recipe or
 * image misses.
 */
export function featureKey(graphDigest: string, split: Split): string {
  return createHash('sha256').update(`v${VERSION}|${graphDigest}|${split.shape.join('x')}|${split.count}\n`).update(split.images).update(split.labels).digest('hex');
}

/** Where features under `key` are cached: `<cache>/features/<name>-<16 hex>.bin`. */
export function featureCacheFile(name: string, key: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), 'features', `${name.replace(/[^A-Za-z0-9._-]+/g, '_')}-${key.slice(0, 16)}.bin`);
}

/** The file: magic, u32 header length, JSON header padded to 4 bytes, then the float32 features. */
function encode(key: string, f: FeatureSplit): Uint8Array {
  const json = Buffer.from(JSON.stringify({ key, count: f.count, shape: f.shape }));
  const padded = Math.ceil(json.length / 4) * 4;
  const head = Buffer.alloc(12 + padded, 0x20);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(padded, 8);
  json.copy(head, 12);
  return Buffer.concat([head, Buffer.from(f.features.buffer, f.features.byteOffset, f.features.byteLength)]);
}

function decode(bytes: Buffer, key: string, labels: Uint8Array): FeatureSplit | undefined {
  if (bytes.length < 12 || bytes.toString('latin1', 0, 8) !== MAGIC) return undefined;
  const length = bytes.readUInt32LE(8);
  let header: { key?: string; count?: number; shape?: number[] };
  try {
    header = JSON.parse(bytes.toString('utf8', 12, 12 + length));
  } catch {
    return undefined;
  }
  if (header.key !== key || header.count !== labels.length || !Array.isArray(header.shape)) return undefined;
  const values = header.count * elementCount(header.shape);
  if (bytes.length !== 12 + length + 4 * values) return undefined;
  const features = new Float32Array(values);
  new Uint8Array(features.buffer).set(bytes.subarray(12 + length));
  return { features, labels, count: header.count, shape: header.shape };
}

export interface FeatureRun {
  rt: Runtime;
  /** A session on the features graph taking uint8 `images` (featuresGraph's 'bytes' form), opened once the first split misses the cache. */
  session: () => Promise<Session>;
  /** sha256 of the features graph, hex. */
  graphDigest: string;
  shape: number[];
  env?: NodeJS.ProcessEnv;
  /** Called after each batch: images done of the total. */
  progress?: (done: number, total: number) => void;
}

/** A split's features: from the cache where its key matches, else computed in batches and cached. */
export async function splitFeatures(run: FeatureRun, split: Split, name: string): Promise<{ split: FeatureSplit; cached: boolean; file: string }> {
  const key = featureKey(run.graphDigest, split);
  const file = featureCacheFile(name, key, run.env);
  const hit = existsSync(file) ? decode(readFileSync(file), key, split.labels) : undefined;
  if (hit) return { split: hit, cached: true, file };
  const per = elementCount(run.shape);
  const features = new Float32Array(split.count * per);
  if (split.count > 0) {
    const session = await run.session();
    const size = exampleSize(split.shape);
    const dims = byteImageDims({ inputShape: [...split.shape] });
    for (let start = 0; start < split.count; start += FEATURE_BATCH) {
      const n = Math.min(FEATURE_BATCH, split.count - start);
      const images = new run.rt.ort.Tensor('uint8', split.images.subarray(start * size, (start + n) * size), [n, ...dims]);
      const out = await session.run({ images });
      features.set(out.features.data as Float32Array, start * per);
      run.progress?.(start + n, split.count);
    }
  }
  const result = { features, labels: split.labels, count: split.count, shape: run.shape };
  writeFileAtomic(file, encode(key, result));
  return { split: result, cached: false, file };
}
