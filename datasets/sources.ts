import { ensureDir } from '../common/files.ts';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import cliProgress from 'cli-progress';
import { CnnlabError, UsageError } from '../common/errors.ts';
import { Rng } from '../common/rng.ts';
import { maybeGunzip, readIdxFile } from './idx.ts';
import { type DatasetName, type DatasetSpec, type SplitName, DATASETS } from './registry.ts';

export const IMAGE_SIZE = 28;
export const PIXELS = IMAGE_SIZE * IMAGE_SIZE;

export interface Split {
  /** count x 28 x 28 pixels, row-major, 0..255. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export type SourceKind = 'data-dir' | 'env' | 'cache' | 'packaged' | 'download';

export interface Dataset {
  spec: DatasetSpec;
  train: Split;
  test: Split;
  source: { kind: SourceKind; dir: string };
}

export interface LookupOptions {
  /** `--data-dir`: a folder holding the four IDX files (raw or .gz). */
  dataDir?: string;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Allow the automatic download when nothing is found (default true; CNNLAB_OFFLINE=1 turns it off). */
  download?: boolean;
  /** Show a progress bar while downloading (default: when stderr is a TTY). */
  progress?: boolean;
}

export function cacheDir(name: DatasetName, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME ? env.XDG_CACHE_HOME : join(env.HOME ?? homedir(), '.cache');
  return join(base, 'cnnlab', name);
}

/** The path of one IDX file in `dir`, raw or gzip, or undefined. */
function idxPath(dir: string, name: string): string | undefined {
  for (const candidate of [join(dir, name), join(dir, `${name}.gz`)]) {
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

function allFiles(spec: DatasetSpec): string[] {
  return (['train', 'test'] as const).flatMap((s) => [spec.files[s].images.name, spec.files[s].labels.name]);
}

function missingIn(spec: DatasetSpec, dir: string): string[] {
  return allFiles(spec).filter((f) => idxPath(dir, f) === undefined);
}

export interface Candidate {
  kind: Exclude<SourceKind, 'download'>;
  dir: string;
  explicit: boolean;
}

/** Lookup order: --data-dir, $CNNLAB_DATA_DIR, the cache, the packaged copy. */
export function candidates(spec: DatasetSpec, opts: LookupOptions = {}): Candidate[] {
  const env = opts.env ?? process.env;
  const list: Candidate[] = [];
  if (opts.dataDir) list.push({ kind: 'data-dir', dir: opts.dataDir, explicit: true });
  if (env.CNNLAB_DATA_DIR) {
    // One folder may hold several datasets in subfolders named after them, or one dataset directly.
    const sub = join(env.CNNLAB_DATA_DIR, spec.name);
    list.push({ kind: 'env', dir: existsSync(sub) ? sub : env.CNNLAB_DATA_DIR, explicit: true });
  }
  list.push({ kind: 'cache', dir: cacheDir(spec.name, env), explicit: false });
  const packaged = spec.packagedDir();
  if (packaged) list.push({ kind: 'packaged', dir: packaged, explicit: false });
  return list;
}

/** Finds the folder the dataset will be read from, without reading it. */
export function locate(spec: DatasetSpec, opts: LookupOptions = {}): Candidate | undefined {
  for (const c of candidates(spec, opts)) {
    const missing = missingIn(spec, c.dir);
    if (missing.length === 0) return c;
    if (c.explicit) {
      const what = c.kind === 'data-dir' ? '--data-dir' : '$CNNLAB_DATA_DIR';
      const message = `${what} ${c.dir}: ${spec.name} file ${missing[0]} (or ${missing[0]}.gz) not found; expected ${allFiles(spec).join(', ')}`;
      throw c.kind === 'data-dir' ? new UsageError(message) : new CnnlabError(message);
    }
  }
  return undefined;
}

function readSplit(spec: DatasetSpec, dir: string, split: SplitName): Split {
  const imagesFile = idxPath(dir, spec.files[split].images.name)!;
  const labelsFile = idxPath(dir, spec.files[split].labels.name)!;
  const images = readIdxFile(imagesFile, 'images');
  const labels = readIdxFile(labelsFile, 'labels');
  const [count, rows, cols] = images.dims;
  if (rows !== IMAGE_SIZE || cols !== IMAGE_SIZE) {
    throw new CnnlabError(`${imagesFile}: expected ${IMAGE_SIZE}x${IMAGE_SIZE} images, found ${rows}x${cols}`);
  }
  if (labels.dims[0] !== count) {
    throw new CnnlabError(
      `${labelsFile}: ${labels.dims[0]} labels for ${count} images in ${imagesFile}; the counts must match`,
    );
  }
  const classes = spec.classes.length;
  for (let i = 0; i < labels.data.length; i++) {
    if (labels.data[i] >= classes) {
      throw new CnnlabError(`${labelsFile}: label ${labels.data[i]} at index ${i} is outside 0..${classes - 1}`);
    }
  }
  return { images: images.data, labels: labels.data, count };
}

async function fetchWithProgress(url: string, label: string, progress: boolean): Promise<Uint8Array> {
  const res = await fetch(url, { signal: AbortSignal.timeout(120_000) });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length') ?? 0);
  const bar = progress
    ? new cliProgress.SingleBar(
        { format: `${label} [{bar}] {percentage}% {value}/{total} bytes`, stream: process.stderr },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(total || 1, 0);
  const chunks: Uint8Array[] = [];
  let received = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    chunks.push(chunk);
    received += chunk.length;
    bar?.update(total ? received : 0);
  }
  bar?.stop();
  return Buffer.concat(chunks);
}

/** Downloads the four files into the cache, checking each decompressed file's sha256. */
export async function download(spec: DatasetSpec, opts: LookupOptions = {}): Promise<string> {
  const env = opts.env ?? process.env;
  const dir = cacheDir(spec.name, env);
  const bases = env.CNNLAB_DOWNLOAD_BASE ? [env.CNNLAB_DOWNLOAD_BASE] : spec.downloadBases;
  const progress = opts.progress ?? Boolean(process.stderr.isTTY);
  ensureDir(dir);
  for (const split of ['train', 'test'] as const) {
    for (const file of [spec.files[split].images, spec.files[split].labels]) {
      if (idxPath(dir, file.name)) continue;
      const errors: string[] = [];
      let done = false;
      for (const base of bases) {
        const url = `${base.replace(/\/?$/, '/')}${file.name}.gz`;
        try {
          const gz = await fetchWithProgress(url, `${spec.name} ${file.name}`, progress);
          const digest = createHash('sha256').update(gunzipSync(gz)).digest('hex');
          if (digest !== file.sha256) throw new Error(`checksum mismatch: sha256 ${digest}, expected ${file.sha256}`);
          const target = join(dir, `${file.name}.gz`);
          writeFileSync(`${target}.part`, gz);
          renameSync(`${target}.part`, target);
          done = true;
          break;
        } catch (err) {
          errors.push(`${url}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (!done) throw new Error(errors.join('; '));
    }
  }
  return dir;
}

function whereWeLooked(spec: DatasetSpec, opts: LookupOptions): string {
  return candidates(spec, opts)
    .map((c) => c.dir)
    .join(', ');
}

/** Parsed splits by folder, so tests and sweeps in one process read each folder once. */
const loaded = new Map<string, { train: Split; test: Split }>();

/** Loads both splits of a dataset, looking it up as documented in the README. */
/**
 * Which built-in dataset a folder's IDX files are, by the sha256 of their decompressed train
 * labels: a folder given for one dataset that holds another's files is one line saying so,
 * rather than data trained under the wrong name, classes and normalisation.
 */
function checkIdentity(spec: DatasetSpec, dir: string): void {
  const file = idxPath(dir, spec.files.train.labels.name)!;
  const digest = createHash('sha256').update(maybeGunzip(readFileSync(file), file)).digest('hex');
  if (digest === spec.files.train.labels.sha256) return;
  const other = Object.values(DATASETS).find((d) => d.files.train.labels.sha256 === digest);
  if (other) throw new CnnlabError(`${dir}: holds ${other.name}'s IDX files, not ${spec.name}'s; pass --dataset ${other.name}`, 2);
  process.stderr.write(`cnnlab: ${dir}: IDX files of no built-in dataset (their checksums differ); read as ${spec.name} (its ${spec.classes.length} classes and normalisation)\n`);
}

export async function loadDataset(which: DatasetName | DatasetSpec, opts: LookupOptions = {}): Promise<Dataset> {
  const spec = typeof which === 'string' ? DATASETS[which] : which;
  const env = opts.env ?? process.env;
  let found: { kind: SourceKind; dir: string } | undefined = locate(spec, opts);
  if (!found) {
    const allowed = (opts.download ?? true) && env.CNNLAB_OFFLINE !== '1';
    const advice = `install it (${spec.packagedHint}) or pass --data-dir DIR holding the four IDX files`;
    if (!allowed) {
      throw new CnnlabError(`${spec.name}: not found in ${whereWeLooked(spec, opts)}; ${advice}`);
    }
    try {
      found = { kind: 'download', dir: await download(spec, opts) };
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new CnnlabError(
        `${spec.name}: not found in ${whereWeLooked(spec, opts)} and the download failed (${reason}); ${advice}`,
      );
    }
  }
  const key = `${spec.name}:${found.dir}`;
  let splits = loaded.get(key);
  if (!splits) {
    if (found.kind === 'data-dir' || found.kind === 'env') checkIdentity(spec, found.dir);
    splits = { train: readSplit(spec, found.dir, 'train'), test: readSplit(spec, found.dir, 'test') };
    loaded.set(key, splits);
  }
  return { spec, ...splits, source: found };
}

/** Mean and population standard deviation of the pixels scaled to 0..1. */
export function pixelStats(images: Uint8Array): { mean: number; std: number } {
  const hist = new Float64Array(256);
  for (let i = 0; i < images.length; i++) hist[images[i]]++;
  let sum = 0;
  let sumSq = 0;
  for (let v = 0; v < 256; v++) {
    const x = v / 255;
    sum += hist[v] * x;
    sumSq += hist[v] * x * x;
  }
  const mean = sum / images.length;
  return { mean, std: Math.sqrt(Math.max(0, sumSq / images.length - mean * mean)) };
}

/** A view of the first `n` examples of a split (no copy). */
/**
 * Holds `count` examples out of a split, chosen by a permutation from `seed`: the validation
 * set, and the rest in their original order for training.
 */
export function holdOut(split: Split, count: number, seed: number): { train: Split; val: Split } {
  const chosen = Rng.seeded(seed).permutation(split.count).subarray(0, count).sort();
  const held = new Uint8Array(split.count);
  for (const i of chosen) held[i] = 1;
  const pick = (which: number, n: number): Split => {
    const images = new Uint8Array(n * PIXELS);
    const labels = new Uint8Array(n);
    let k = 0;
    for (let i = 0; i < split.count; i++) {
      if (held[i] !== which) continue;
      images.set(split.images.subarray(i * PIXELS, (i + 1) * PIXELS), k * PIXELS);
      labels[k++] = split.labels[i];
    }
    return { images, labels, count: n };
  };
  return { train: pick(0, split.count - count), val: pick(1, count) };
}

export function sliceSplit(split: Split, n: number): Split {
  const count = Math.min(n, split.count);
  return { images: split.images.subarray(0, count * PIXELS), labels: split.labels.subarray(0, count), count };
}
