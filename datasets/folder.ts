import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import sharp from 'sharp';
import { CnnlabError } from '../common/errors.ts';
import { writeFileAtomic } from '../common/files.ts';
import { FOLDER_PREFIX, type ImageConversion, type ImageShape, type SplitName } from './registry.ts';
import { cacheRoot, type Dataset, exampleSize, pixelStats, type Split } from './sources.ts';

/**
 * Image-folder datasets, torchvision's ImageFolder convention: DIR/train/<class>/* and
 * DIR/test/<class>/*, class index = position of the folder name in sorted order. Images of any
 * size and format sharp reads are converted to the model's [C, H, W] and cached as uint8.
 */

/** What is read as an image; anything else in a class folder is listed as skipped. */
const IMAGE_EXTENSIONS = /\.(png|jpe?g|webp|gif|tiff?|avif)$/i;
/** Larger images are refused rather than decoded (a 40-megapixel photo is ~120 MB of pixels). */
const MAX_INPUT_PIXELS = 40_000_000;
/** Bump when the conversion changes, so caches made by an older one are not read. */
const CONVERSION_VERSION = 1;
const CACHE_MAGIC = 'CNNLABIF';

export interface FolderFile {
  /** Relative to the dataset folder, with forward slashes. */
  path: string;
  label: number;
  size: number;
  mtimeMs: number;
}

export interface FolderListing {
  dir: string;
  /** `folder:<name of DIR>`. */
  name: string;
  classes: string[];
  files: Record<SplitName, FolderFile[]>;
  /** Files in class folders that are not images by their extension. */
  ignored: string[];
}

export interface SkippedFile {
  path: string;
  reason: string;
}

/** A dataset read from an image folder, with what could not be read and whether it came from the cache. */
export interface FolderDataset extends Dataset {
  skipped: SkippedFile[];
  cached: boolean;
  cacheFile: string;
}

const visible = (name: string) => !name.startsWith('.');

/** Whether DIR follows the train/<class>/ layout (rather than holding IDX files). */
export function isImageFolder(dir: string): boolean {
  const train = join(dir, 'train');
  return existsSync(train) && statSync(train).isDirectory();
}

function subfolders(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && visible(e.name))
    .map((e) => e.name)
    .sort();
}

/** The class names of an image folder: its train/ subfolders, sorted. Cheap: reads no image. */
export function folderClasses(dir: string): string[] {
  const train = join(dir, 'train');
  if (!isImageFolder(dir)) throw new CnnlabError(`--data-dir ${dir}: expected train/<class>/ and test/<class>/ image folders (or the four IDX files); ${train} not found`, 2);
  const classes = subfolders(train);
  if (classes.length < 2) throw new CnnlabError(`--data-dir ${dir}: train/ holds ${classes.length} class folder${classes.length === 1 ? '' : 's'}; expected at least 2 (train/<class>/<image>)`, 2);
  if (classes.length > 256) throw new CnnlabError(`--data-dir ${dir}: train/ holds ${classes.length} class folders; at most 256 are supported (labels are bytes)`, 2);
  return classes;
}

/** Lists both splits without decoding anything; the test split's classes must be among the training ones. */
export function listImageFolder(dir: string): FolderListing {
  const root = resolve(dir);
  const classes = folderClasses(root);
  const ignored: string[] = [];
  const files = { train: [] as FolderFile[], test: [] as FolderFile[] };
  for (const split of ['train', 'test'] as const) {
    const splitDir = join(root, split);
    if (!existsSync(splitDir) || !statSync(splitDir).isDirectory()) throw new CnnlabError(`--data-dir ${dir}: ${split}/ not found; expected train/<class>/ and test/<class>/`, 2);
    for (const cls of subfolders(splitDir)) {
      const label = classes.indexOf(cls);
      if (label < 0) throw new CnnlabError(`--data-dir ${dir}: test/${cls}/ is a class that train/ does not have (train classes: ${classes.join(', ')})`, 2);
      for (const e of readdirSync(join(splitDir, cls), { withFileTypes: true })) {
        if (!e.isFile() || !visible(e.name)) continue;
        const path = `${split}/${cls}/${e.name}`;
        if (!IMAGE_EXTENSIONS.test(e.name)) {
          ignored.push(path);
          continue;
        }
        const st = statSync(join(root, path));
        files[split].push({ path, label, size: st.size, mtimeMs: Math.round(st.mtimeMs) });
      }
    }
    files[split].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }
  if (files.train.length === 0) throw new CnnlabError(`--data-dir ${dir}: train/ holds no images (PNG, JPEG, WebP, GIF, TIFF or AVIF)`, 2);
  // A class without training images would train an output that can never be right.
  const empty = classes.filter((_, k) => !files.train.some((f) => f.label === k));
  if (empty.length) throw new CnnlabError(`--data-dir ${dir}: ${empty.map((c) => `train/${c}/`).join(', ')} ${empty.length === 1 ? 'holds' : 'hold'} no images (PNG, JPEG, WebP, GIF, TIFF or AVIF); every class needs training images`, 2);
  if (files.test.length === 0) throw new CnnlabError(`--data-dir ${dir}: test/ holds no images (PNG, JPEG, WebP, GIF, TIFF or AVIF)`, 2);
  return { dir: root, name: `${FOLDER_PREFIX}${basename(root)}`, classes, files, ignored };
}

/**
 * One image as planar uint8 [C, H, W]: EXIF orientation applied, transparency flattened onto
 * white, resized as `conversion` says (by default stretched to W x H, torchvision's
 * Resize((H, W)); 'crop': scaled until it covers W x H and its centre cut out, torchvision's
 * Resize(shorter side) + CenterCrop((H, W))), grey (C = 1) or sRGB (C = 3) with its planes in
 * RGB or BGR order. Training, eval and predict all convert through this one function.
 */
export async function imageToPlanes(input: string | Uint8Array, shape: ImageShape, conversion: ImageConversion = {}): Promise<Uint8Array> {
  const [c, h, w] = shape;
  if (c !== 1 && c !== 3) throw new CnnlabError(`an image input of ${c} channels; expected 1 (grey) or 3 (RGB)`);
  if (c === 1 && conversion.channelOrder === 'bgr') throw new CnnlabError('--channel-order: bgr applies to a 3-channel (RGB) input; this one takes 1 channel', 2);
  const fit = conversion.resize === 'crop' ? { fit: 'cover' as const, position: 'centre' } : { fit: 'fill' as const };
  let img = sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, pages: 1 }).rotate().flatten({ background: '#ffffff' }).resize(w, h, fit);
  img = c === 1 ? img.greyscale() : img.toColourspace('srgb');
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const out = new Uint8Array(c * h * w);
  const stride = info.channels;
  const bgr = conversion.channelOrder === 'bgr';
  for (let p = 0; p < h * w; p++) {
    for (let ch = 0; ch < c; ch++) out[ch * h * w + p] = data[p * stride + Math.min(bgr ? 2 - ch : ch, stride - 1)];
  }
  return out;
}

/** A non-default conversion as a short tag for cache keys and file names (`bgr-crop`); '' for the default. */
function conversionTag(conversion: ImageConversion): string {
  return [conversion.channelOrder, conversion.resize].filter(Boolean).join('-');
}

/** The cache key: the conversion, the shape and every file's path, size and modification time. */
function contentKey(listing: FolderListing, shape: ImageShape, conversion: ImageConversion): string {
  // The default conversion adds nothing, so the caches made before conversions had options stay valid.
  const tag = conversionTag(conversion);
  const hash = createHash('sha256').update(`v${CONVERSION_VERSION}|${shape.join('x')}${tag ? `|${tag}` : ''}|${listing.classes.join('/')}\n`);
  for (const split of ['train', 'test'] as const) for (const f of listing.files[split]) hash.update(`${f.path}|${f.size}|${f.mtimeMs}|${f.label}\n`);
  return hash.digest('hex');
}

/** Where a folder's conversion to `shape` is cached, named by the first 16 hex digits of its content key. */
function folderCacheFile(listing: FolderListing, shape: ImageShape, conversion: ImageConversion, key: string, env: NodeJS.ProcessEnv = process.env): string {
  const safe = basename(listing.dir).replace(/[^A-Za-z0-9._-]+/g, '_');
  const tag = conversionTag(conversion);
  return join(cacheRoot(env), 'folders', `${safe}-${shape.join('x')}${tag ? `-${tag}` : ''}-${key.slice(0, 16)}.bin`);
}

interface CacheHeader {
  key: string;
  shape: ImageShape;
  classes: string[];
  counts: Record<SplitName, number>;
  mean: number;
  std: number;
  skipped: SkippedFile[];
}

/** The cache file: magic, header length (u32 LE), JSON header, then train images, train labels, test images, test labels. */
function encodeCache(header: CacheHeader, train: Split, test: Split): Uint8Array {
  const json = Buffer.from(JSON.stringify(header));
  const head = Buffer.alloc(12);
  head.write(CACHE_MAGIC, 0, 'latin1');
  head.writeUInt32LE(json.length, 8);
  return Buffer.concat([head, json, train.images, train.labels, test.images, test.labels]);
}

function decodeCache(bytes: Uint8Array, key: string): { header: CacheHeader; train: Split; test: Split } | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== CACHE_MAGIC) return undefined;
  const length = buf.readUInt32LE(8);
  let header: CacheHeader;
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + length)) as CacheHeader;
  } catch {
    return undefined;
  }
  if (header.key !== key) return undefined;
  const size = exampleSize(header.shape);
  let at = 12 + length;
  const take = (n: number) => {
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset + at, n);
    at += n;
    return view;
  };
  if (buf.length !== at + (size + 1) * (header.counts.train + header.counts.test)) return undefined;
  const split = (count: number): Split => ({ images: take(count * size), labels: take(count), count, shape: header.shape });
  const train = split(header.counts.train);
  return { header, train, test: split(header.counts.test) };
}

export interface FolderLoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Progress bar on stderr while decoding (default: when stderr is a TTY). */
  progress?: boolean;
  /** Where the one-line summary of skipped files goes (default stderr). */
  warn?: (line: string) => void;
  /** Channel order and resizing (default: RGB, stretched). */
  conversion?: ImageConversion;
}

/** Decodes a split's files in parallel; files sharp cannot read are returned as skipped. */
async function decodeSplit(root: string, files: FolderFile[], shape: ImageShape, conversion: ImageConversion, bar: cliProgress.SingleBar | undefined): Promise<{ split: Split; skipped: SkippedFile[] }> {
  const size = exampleSize(shape);
  const planes: (Uint8Array | undefined)[] = new Array(files.length);
  const skipped: SkippedFile[] = [];
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      try {
        planes[i] = await imageToPlanes(join(root, files[i].path), shape, conversion);
      } catch (err) {
        skipped.push({ path: files[i].path, reason: (err instanceof Error ? err.message : String(err)).split('\n')[0] });
      }
      bar?.increment();
    }
  };
  // sharp decodes on libvips' own threads; a few requests in flight per core keep them busy.
  await Promise.all(Array.from({ length: Math.min(files.length, 4 * availableParallelism()) }, worker));
  const kept = files.map((f, i) => ({ f, p: planes[i] })).filter((x) => x.p);
  const images = new Uint8Array(kept.length * size);
  const labels = new Uint8Array(kept.length);
  kept.forEach(({ f, p }, k) => {
    images.set(p!, k * size);
    labels[k] = f.label;
  });
  skipped.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { split: { images, labels, count: kept.length, shape }, skipped };
}

/** The one line that names the files that were left out, and why (the first few). */
export function skippedSummary(dir: string, skipped: SkippedFile[], ignored: string[]): string | undefined {
  const all = [...skipped.map((s) => `${s.path} (${s.reason})`), ...ignored.map((p) => `${p} (not an image file type)`)];
  if (!all.length) return undefined;
  const shown = all.slice(0, 3).join(', ');
  return `${dir}: ${all.length} file${all.length === 1 ? '' : 's'} skipped: ${shown}${all.length > 3 ? `, and ${all.length - 3} more` : ''}`;
}

/** In-process copies by cache file, so a sweep reads each folder once. */
const loaded = new Map<string, FolderDataset>();

/**
 * Loads an image folder converted to `shape` (and `opts.conversion`): from the cache when the
 * folder's files are the ones it was made from, else decoded in parallel (with a progress bar)
 * and cached atomically.
 */
export async function loadImageFolder(dir: string, shape: ImageShape, opts: FolderLoadOptions = {}): Promise<FolderDataset> {
  const listing = listImageFolder(dir);
  const conversion = opts.conversion ?? {};
  const key = contentKey(listing, shape, conversion);
  const cacheFile = folderCacheFile(listing, shape, conversion, key, opts.env);
  const known = loaded.get(cacheFile);
  if (known) return known;
  const fromCache = existsSync(cacheFile) ? decodeCache(readFileSync(cacheFile), key) : undefined;
  let result: FolderDataset;
  if (fromCache) {
    const { header, train, test } = fromCache;
    result = { info: infoOf(listing, header), train, test, source: { kind: 'data-dir', dir: listing.dir }, skipped: header.skipped, cached: true, cacheFile };
  } else {
    const total = listing.files.train.length + listing.files.test.length;
    const bar = (opts.progress ?? Boolean(process.stderr.isTTY))
      ? new cliProgress.SingleBar({ format: `reading ${basename(listing.dir)} as ${shape.join('x')} [{bar}] {value}/{total} images`, stream: process.stderr, clearOnComplete: true }, cliProgress.Presets.shades_classic)
      : undefined;
    bar?.start(total, 0);
    const train = await decodeSplit(listing.dir, listing.files.train, shape, conversion, bar);
    const test = await decodeSplit(listing.dir, listing.files.test, shape, conversion, bar);
    bar?.stop();
    for (const [name, s] of [['train', train], ['test', test]] as const) {
      if (s.split.count === 0) throw new CnnlabError(`--data-dir ${dir}: none of the ${listing.files[name].length} images in ${name}/ could be read (${s.skipped[0]?.path}: ${s.skipped[0]?.reason})`, 2);
    }
    const header: CacheHeader = { key, shape, classes: listing.classes, counts: { train: train.split.count, test: test.split.count }, ...pixelStats(train.split.images), skipped: [...train.skipped, ...test.skipped] };
    writeFileAtomic(cacheFile, encodeCache(header, train.split, test.split));
    result = { info: infoOf(listing, header), train: train.split, test: test.split, source: { kind: 'data-dir', dir: listing.dir }, skipped: header.skipped, cached: false, cacheFile };
  }
  const line = skippedSummary(dir, result.skipped, listing.ignored);
  if (line) (opts.warn ?? ((l: string) => process.stderr.write(`cnnlab: ${l}\n`)))(line);
  loaded.set(cacheFile, result);
  return result;
}

function infoOf(listing: FolderListing, header: CacheHeader): FolderDataset['info'] {
  return { name: listing.name, title: `image folder ${listing.dir}`, classes: listing.classes, mean: header.mean, std: header.std };
}
