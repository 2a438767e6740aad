import { ensureDir } from '../common/files.ts';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { unzipSync } from 'fflate';
import cliProgress from 'cli-progress';
import { asInputError, CnnlabError, UsageError } from '../common/errors.ts';
import { Rng } from '../common/rng.ts';
import { maybeGunzip, readIdxFile } from './idx.ts';
import { type Checksum, type DatasetInfo, type DatasetName, type DatasetSpec, DATASETS, type ImageShape, type SplitName } from './registry.ts';

/** MNIST's image side; every IDX dataset here is 1x28x28. */
export const IMAGE_SIZE = 28;
export const IDX_SHAPE: ImageShape = [1, IMAGE_SIZE, IMAGE_SIZE];

export interface Split {
  /** count x C x H x W pixels (planar, row-major), 0..255. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  shape: ImageShape;
}

/** Pixels in one example. */
export function exampleSize(shape: ImageShape): number {
  return shape[0] * shape[1] * shape[2];
}

/** One example's pixels (a view, no copy). */
export function exampleAt(split: Split, i: number): Uint8Array {
  const n = exampleSize(split.shape);
  return split.images.subarray(i * n, (i + 1) * n);
}

export type SourceKind = 'data-dir' | 'env' | 'cache' | 'packaged' | 'download';

export interface Dataset {
  info: DatasetInfo & { mean: number; std: number };
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

/** cnnlab's cache folder: $XDG_CACHE_HOME/cnnlab or ~/.cache/cnnlab. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME ? env.XDG_CACHE_HOME : join(env.HOME ?? homedir(), '.cache');
  return join(base, 'cnnlab');
}

export function cacheDir(name: DatasetName, env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), name);
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

/** MNIST's row order from EMNIST's column order, one 28x28 image at a time. */
function transpose(images: Uint8Array): void {
  const t = new Uint8Array(IMAGE_SIZE * IMAGE_SIZE);
  for (let o = 0; o < images.length; o += t.length) {
    const img = images.subarray(o, o + t.length);
    for (let y = 0; y < IMAGE_SIZE; y++) for (let x = 0; x < IMAGE_SIZE; x++) t[y * IMAGE_SIZE + x] = img[x * IMAGE_SIZE + y];
    img.set(t);
  }
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
  const offset = spec.labelOffset ?? 0;
  for (let i = 0; i < labels.data.length; i++) {
    const label = labels.data[i] - offset;
    if (label < 0 || label >= classes) {
      throw new CnnlabError(`${labelsFile}: label ${labels.data[i]} at index ${i} is outside ${offset}..${classes - 1 + offset}`);
    }
    labels.data[i] = label;
  }
  if (spec.transposed) transpose(images.data);
  return { images: images.data, labels: labels.data, count, shape: IDX_SHAPE };
}

async function fetchWithProgress(url: string, label: string, progress: boolean): Promise<Uint8Array> {
  // EMNIST's archive is 562 MB: a generous limit that still ends a stalled download.
  const res = await fetch(url, { signal: AbortSignal.timeout(30 * 60_000) });
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

/** Whether gzip bytes pass a checksum; throws 'checksum mismatch' naming both digests. */
function verify(gz: Uint8Array, check: Checksum, what: string): void {
  const bytes = check.of === 'gzip' ? gz : gunzipSync(gz);
  const digest = createHash(check.algorithm).update(bytes).digest('hex');
  if (digest !== check.digest) throw new Error(`${what}: checksum mismatch: ${check.algorithm} ${digest}, expected ${check.digest}`);
}

function store(dir: string, name: string, gz: Uint8Array): void {
  const target = join(dir, `${name}.gz`);
  writeFileSync(`${target}.part`, gz);
  renameSync(`${target}.part`, target);
}

/** Tries each base in turn for one file; the errors of all of them if none works. */
async function fetchFirst(bases: readonly string[], file: string, label: string, progress: boolean): Promise<Uint8Array> {
  const errors: string[] = [];
  for (const base of bases) {
    const url = `${base.replace(/\/?$/, '/')}${file}`;
    try {
      return await fetchWithProgress(url, label, progress);
    } catch (err) {
      errors.push(`${url}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new Error(errors.join('; '));
}

/**
 * Downloads the four files into the cache, checking each one's checksum. An archive (EMNIST) is
 * checked as a whole, then every dataset that lives in it is unpacked, each file checked again,
 * so one download serves EMNIST digits and letters alike.
 */
export async function download(spec: DatasetSpec, opts: LookupOptions = {}): Promise<string> {
  const env = opts.env ?? process.env;
  const dir = cacheDir(spec.name, env);
  const bases = env.CNNLAB_DOWNLOAD_BASE ? [env.CNNLAB_DOWNLOAD_BASE] : spec.downloadBases;
  const progress = opts.progress ?? Boolean(process.stderr.isTTY);
  const files = (['train', 'test'] as const).flatMap((split) => [spec.files[split].images, spec.files[split].labels]);
  ensureDir(dir);
  if (spec.archive) {
    const archive = spec.archive;
    if (files.every((f) => idxPath(dir, f.name))) return dir;
    const zip = await fetchFirst(bases, archive.file, `${spec.name} ${archive.file}`, progress);
    verify(zip, archive.check, archive.file);
    const wanted = (d: DatasetSpec) => (['train', 'test'] as const).flatMap((split) => [d.files[split].images, d.files[split].labels]);
    const siblings = Object.values(DATASETS).filter((d) => d.archive?.file === archive.file && d.archive.check.digest === archive.check.digest);
    if (!siblings.some((d) => d.name === spec.name)) siblings.push(spec);
    const names = new Set(siblings.flatMap((d) => wanted(d).map((f) => `${archive.prefix}${f.name}.gz`)));
    let entries: Record<string, Uint8Array>;
    try {
      entries = unzipSync(zip, { filter: (f) => names.has(f.name) });
    } catch (err) {
      throw new Error(`${archive.file}: not a readable zip (${err instanceof Error ? err.message : String(err)})`);
    }
    for (const d of siblings) {
      const into = d.name === spec.name ? dir : cacheDir(d.name, env);
      ensureDir(into);
      for (const f of wanted(d)) {
        const entry = entries[`${archive.prefix}${f.name}.gz`];
        if (!entry) throw new Error(`${archive.file}: ${archive.prefix}${f.name}.gz missing from the archive`);
        verify(entry, f.check, `${archive.file}: ${f.name}.gz`);
        store(into, f.name, entry);
      }
    }
    return dir;
  }
  for (const file of files) {
    if (idxPath(dir, file.name)) continue;
    const gz = await fetchFirst(bases, `${file.name}.gz`, `${spec.name} ${file.name}`, progress);
    verify(gz, file.check, `${file.name}.gz`);
    store(dir, file.name, gz);
  }
  return dir;
}

function whereWeLooked(spec: DatasetSpec, opts: LookupOptions): string {
  return candidates(spec, opts)
    .map((c) => c.dir)
    .join(', ');
}

/** Parsed splits by folder, so tests and sweeps in one process read each folder once. */
const loaded = new Map<string, { train: Split; test: Split; mean: number; std: number }>();

/**
 * Whether a train-labels file is the one a dataset publishes: true or false where its checksum
 * can tell, undefined where it cannot (only the .gz's digest is published and this copy is raw).
 */
function isFileOf(spec: DatasetSpec, bytes: Uint8Array, raw: Uint8Array): boolean | undefined {
  const check = spec.files.train.labels.check;
  if (check.of === 'gzip' && bytes === raw) return undefined;
  const digest = createHash(check.algorithm).update(check.of === 'gzip' ? bytes : raw).digest('hex');
  return digest === check.digest;
}

/**
 * Which built-in dataset a folder's IDX files are, by the checksum of their train labels: a
 * folder given for one dataset that holds another's files is one line saying so, rather than
 * data trained under the wrong name, classes and normalisation.
 */
function checkIdentity(spec: DatasetSpec, dir: string): void {
  const file = idxPath(dir, spec.files.train.labels.name)!;
  const bytes = readFileSync(file);
  const raw = maybeGunzip(bytes, file);
  const mine = isFileOf(spec, bytes, raw);
  if (mine) return;
  const other = Object.values(DATASETS).find((d) => d !== spec && isFileOf(d, bytes, raw));
  if (other) throw new CnnlabError(`${dir}: holds ${other.name}'s IDX files, not ${spec.name}'s; pass --dataset ${other.name}`, 2);
  if (mine === undefined) return;
  process.stderr.write(`cnnlab: ${dir}: IDX files whose checksums match no built-in dataset; read as ${spec.name} (its ${spec.classes.length} classes and normalisation)\n`);
}

export async function loadDataset(which: DatasetName | DatasetSpec, opts: LookupOptions = {}): Promise<Dataset> {
  const spec = typeof which === 'string' ? DATASETS[which] : which;
  const env = opts.env ?? process.env;
  let found: { kind: SourceKind; dir: string } | undefined = locate(spec, opts);
  if (!found) {
    const allowed = (opts.download ?? true) && env.CNNLAB_OFFLINE !== '1';
    const advice = `${spec.packagedHint} or pass --data-dir DIR holding the four IDX files`;
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
    // Files the user named (--data-dir) that cannot be read as IDX are the user's to fix (exit 2).
    const read = (split: SplitName) => {
      try {
        return readSplit(spec, found.dir, split);
      } catch (err) {
        throw found.kind === 'data-dir' ? asInputError(err) : err;
      }
    };
    const train = read('train');
    // Datasets whose statistics are not in the registry have them measured here, over all training images.
    const stats = spec.mean !== undefined && spec.std !== undefined ? { mean: spec.mean, std: spec.std } : pixelStats(train.images);
    splits = { train, test: read('test'), ...stats };
    loaded.set(key, splits);
  }
  const { train, test, mean, std } = splits;
  return { info: { name: spec.name, title: spec.title, classes: spec.classes, mean, std }, train, test, source: found };
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

/**
 * Holds `count` examples out of a split, chosen by a permutation from `seed`: the validation
 * set, and the rest in their original order for training.
 */
export function holdOut(split: Split, count: number, seed: number): { train: Split; val: Split } {
  const chosen = Rng.seeded(seed).permutation(split.count).subarray(0, count).sort();
  const held = new Uint8Array(split.count);
  for (const i of chosen) held[i] = 1;
  const size = exampleSize(split.shape);
  const pick = (which: number, n: number): Split => {
    const images = new Uint8Array(n * size);
    const labels = new Uint8Array(n);
    let k = 0;
    for (let i = 0; i < split.count; i++) {
      if (held[i] !== which) continue;
      images.set(exampleAt(split, i), k * size);
      labels[k++] = split.labels[i];
    }
    return { images, labels, count: n, shape: split.shape };
  };
  return { train: pick(0, split.count - count), val: pick(1, count) };
}

/** A view of the first `n` examples of a split (no copy). */
export function sliceSplit(split: Split, n: number): Split {
  const count = Math.min(n, split.count);
  return { images: split.images.subarray(0, count * exampleSize(split.shape)), labels: split.labels.subarray(0, count), count, shape: split.shape };
}
