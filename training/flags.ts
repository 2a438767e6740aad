import { UsageError } from '../common/errors.ts';
import { CHANNEL_ORDERS, DATASET_NAMES, RESIZE_MODES } from '../datasets/registry.ts';
import type { Normalization } from '../graph-builder/model.ts';
import { EP_NAMES } from '../runtime/ort.ts';
import { OPTIMIZER_HELP, OPTIMIZER_NAMES } from './optimizers/index.ts';
import { SCHEDULE_NAMES, scheduleFlagHelp } from './schedule.ts';

/** A number flag's accepted range; `hiOpen` excludes hi; `int` wants a whole number. */
interface NumberRange {
  lo: number;
  hi: number;
  hiOpen?: boolean;
  int?: boolean;
}

interface FlagBase {
  describe: string;
  /** Shapes the training graphs (build-graph takes these alone). */
  graph?: boolean;
  /** Changes what a run computes: sweep/search may vary it, and a resumed run may not change it. */
  recipe: boolean;
}
type NumberFlag = FlagBase & { type: 'number'; range: NumberRange };
type StringFlag = FlagBase & { type: 'string'; choices?: readonly string[]; default?: string };
type BooleanFlag = FlagBase & { type: 'boolean' };
export type FlagSpec = NumberFlag | StringFlag | BooleanFlag;

const MAX_INT = Number.MAX_SAFE_INTEGER;

/**
 * Every training flag, once: yargs options (cli), validation and config resolution
 * (config.ts), the keys sweep and search may vary (sweep.ts) and what a run folder records.
 */
export const TRAIN_FLAGS = {
  opt: { type: 'string', choices: OPTIMIZER_NAMES, graph: true, recipe: true, describe: "optimiser (default: the preset's)" },
  lr: { type: 'number', range: { lo: 0, hi: 10 }, graph: true, recipe: true, describe: "learning rate (default: the preset's)" },
  momentum: { type: 'number', range: { lo: 0, hi: 1, hiOpen: true }, graph: true, recipe: true, describe: OPTIMIZER_HELP.momentum },
  'weight-decay': { type: 'number', range: { lo: 0, hi: 1 }, graph: true, recipe: true, describe: OPTIMIZER_HELP.weightDecay },
  nesterov: { type: 'boolean', graph: true, recipe: true, describe: OPTIMIZER_HELP.nesterov },
  'label-smoothing': { type: 'number', range: { lo: 0, hi: 1, hiOpen: true }, graph: true, recipe: true, describe: 'label smoothing, 0..1 (as PyTorch’s CrossEntropyLoss; on the log-probabilities of a model ending in LogSoftmax)' },
  dataset: { type: 'string', choices: DATASET_NAMES, recipe: true, describe: "dataset (default: the preset's)" },
  'data-dir': { type: 'string', recipe: false, describe: 'the dataset’s four IDX files, or image folders train/<class>/ and test/<class>/ (PNG, JPEG, WebP, ... of any size)' },
  epochs: { type: 'number', range: { lo: 1, hi: 10000, int: true }, recipe: true, describe: "epochs (default: the preset's)" },
  batch: { type: 'number', range: { lo: 1, hi: 65536, int: true }, recipe: true, describe: "batch size (default: the preset's)" },
  schedule: { type: 'string', choices: SCHEDULE_NAMES, recipe: true, describe: 'learning-rate schedule' },
  'step-epochs': { type: 'number', range: { lo: 1, hi: MAX_INT, int: true }, recipe: true, describe: scheduleFlagHelp('step-epochs', 'epochs between decays (default epochs/3)') },
  gamma: { type: 'number', range: { lo: 0, hi: 1 }, recipe: true, describe: scheduleFlagHelp('gamma', 'decay factor (default 0.1)') },
  augment: { type: 'boolean', recipe: true, describe: 'random rotation, translation, brightness/contrast (--no-augment turns a preset’s off)' },
  erase: { type: 'number', range: { lo: 0, hi: 1 }, recipe: true, describe: 'random erasing: probability of setting one random rectangle (2-33% of the image) to black, as torchvision’s RandomErasing; on top of the preset’s augmentation' },
  ep: { type: 'string', choices: EP_NAMES, recipe: false, describe: 'execution provider: cpu (default), cuda, webgpu, wasm (onnxruntime-web), auto (CUDA, else WebGPU on a hardware adapter, else cpu; says which)' },
  threads: { type: 'number', range: { lo: 1, hi: 256, int: true }, recipe: false, describe: 'threads (cpu: intra-op, wasm: workers)' },
  'device-id': { type: 'number', range: { lo: 0, hi: 64, int: true }, recipe: false, describe: 'CUDA device' },
  'steps-per-run': { type: 'number', range: { lo: 1, hi: 100000, int: true }, recipe: false, describe: 'K: training steps per session run (one Loop)' },
  'val-split': { type: 'number', range: { lo: 0, hi: 1e6 }, recipe: true, describe: 'training images held out for validation: a count, or a fraction below 1 (default 5000 for a new run; 0: none); best.onnx is the best validation epoch' },
  seed: { type: 'number', range: { lo: 0, hi: 0xffffffff, int: true }, recipe: true, describe: 'seed of initialisation, shuffling, dropout and augmentation' },
  'limit-train': { type: 'number', range: { lo: 1, hi: MAX_INT, int: true }, recipe: true, describe: 'train on the first N training images only' },
  shuffle: { type: 'boolean', recipe: true, describe: "shuffle each epoch (--no-shuffle; default: the preset's)" },
  'input-range': { type: 'string', choices: ['0..1', '0..255'], recipe: true, describe: 'an imported model (--model): what its input expects of a white pixel (default 0..1)' },
  normalize: { type: 'string', recipe: true, describe: 'MEAN,STD, or per channel M1,M2,M3/S1,S2,S3 (in the order the input takes the channels): inputs become (x - MEAN) / STD after scaling (default: the preset’s; none for an imported model)' },
  'channel-order': { type: 'string', choices: CHANNEL_ORDERS, recipe: true, describe: 'a 3-channel model: the order its input takes the colour planes in, rgb (default) or bgr (Caffe, OpenCV); image folders are converted so' },
  resize: { type: 'string', choices: RESIZE_MODES, recipe: true, describe: 'image folders: stretch to the input size (default), or crop: scale until the image covers it, then cut out the centre (torchvision’s Resize + CenterCrop)' },
  freeze: { type: 'string', recipe: true, describe: "parameters to keep fixed: comma-separated globs over their names (as cnnlab inspect lists them), or 'backbone' for every one but the head's" },
  'fast-path': { type: 'boolean', recipe: false, describe: 'with the backbone frozen and no augmentation, compute each image’s features once (cached) and train the head on them (default); --no-fast-path trains the whole graph' },
  'new-head': { type: 'boolean', recipe: true, describe: 'an imported model: a fresh classifier head even where its width already fits the classes (it is replaced anyway where it does not)' },
  'input-size': { type: 'string', recipe: true, describe: 'an imported model whose input height and width are symbolic: HxW' },
  'output-kind': { type: 'string', choices: ['logits', 'probabilities', 'log-probabilities'], recipe: true, describe: 'an imported model: what its output holds, where its last op does not say' },
  'checkpoint-every': { type: 'number', range: { lo: 0, hi: 1e6 }, recipe: false, describe: 'seconds between mid-epoch checkpoints (default 60; 0: epoch ends only)' },
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof TRAIN_FLAGS;
type ValueOf<S> = S extends { type: 'number' } ? number : S extends { type: 'boolean' } ? boolean : string;
/** The training flags as given (each optional, not yet checked); config.ts resolves them against a recipe. */
export type TrainFlags = { [K in FlagName]?: ValueOf<(typeof TRAIN_FLAGS)[K]> };
export type OptimizerFlags = Pick<TrainFlags, 'opt' | 'lr' | 'momentum' | 'weight-decay' | 'nesterov' | 'label-smoothing'>;

export const FLAG_NAMES = Object.keys(TRAIN_FLAGS) as FlagName[];
/** The flags that shape the training graphs. */
export const GRAPH_FLAGS = FLAG_NAMES.filter((k) => (TRAIN_FLAGS[k] as FlagSpec).graph);
/** The flags that change what a run computes (sweep and search may vary these). */
export const RECIPE_FLAGS = FLAG_NAMES.filter((k) => TRAIN_FLAGS[k].recipe);

/** Only the training flags (yargs adds aliases and positionals to its argument object). */
export function pickFlags(f: Record<string, unknown>): TrainFlags {
  const out: Record<string, unknown> = {};
  for (const k of FLAG_NAMES) if (f[k] !== undefined) out[k] = f[k];
  return out as TrainFlags;
}

/** What a number flag accepts, as its error message says it: `a whole number in 1..10000`. */
export function expectedNumber(r: NumberRange): string {
  return `${r.int ? 'a whole number' : 'a number'} in ${r.lo}..${r.hi}${r.hiOpen ? ' (exclusive)' : ''}`;
}

/** A number within lo..hi, or a one-line UsageError naming the flag. */
export function checkNumber(value: number | undefined, flag: string, r: NumberRange): number | undefined {
  if (value === undefined) return undefined;
  const ok = (r.int ? Number.isInteger(value) : Number.isFinite(value)) && value >= r.lo && (r.hiOpen ? value < r.hi : value <= r.hi);
  if (!ok) throw new UsageError(`${flag}: expected ${expectedNumber(r)}, got ${value}`);
  return value;
}

/** Checks every given flag against the table; the first bad one is a one-line UsageError naming it. */
export function checkFlags(f: TrainFlags): TrainFlags {
  for (const k of FLAG_NAMES) {
    const v = f[k];
    if (v === undefined) continue;
    const spec: FlagSpec = TRAIN_FLAGS[k];
    if (spec.type === 'number') checkNumber(v as number, `--${k}`, spec.range);
    else if (spec.type === 'string' && spec.choices && !spec.choices.includes(v as string)) {
      throw new UsageError(`--${k}: expected one of ${spec.choices.join(', ')}, got '${String(v)}'`);
    }
  }
  return f;
}

/**
 * `--normalize MEAN,STD`, or one value per channel `M1,M2,M3/S1,S2,S3` (`MEAN/STD` and a single
 * value on either side of the slash also do): a list of one value is a number. A bad value is
 * one line naming the flag; the channel count is checked against the model by checkNormalization.
 */
export function parseNormalize(value: string | undefined): Normalization | undefined {
  if (value === undefined) return undefined;
  const bad = () =>
    new UsageError(`--normalize: expected MEAN,STD or M1,M2,M3/S1,S2,S3 (one value per channel) with every STD > 0, e.g. 0.1307,0.3081 or 0.485,0.456,0.406/0.229,0.224,0.225; got '${value}'`);
  const list = (s: string) => s.split(',').map((v) => (v.trim() === '' ? NaN : Number(v.trim())));
  const sides = value.split('/');
  if (sides.length > 2) throw bad();
  const whole = list(value);
  if (sides.length === 1 && whole.length !== 2) throw bad();
  const [mean, std] = sides.length === 2 ? sides.map(list) : [[whole[0]], [whole[1]]];
  if (!mean.every(Number.isFinite) || !std.every((v) => Number.isFinite(v) && v > 0)) throw bad();
  if (mean.length > 1 && std.length > 1 && mean.length !== std.length) throw bad();
  return { mean: mean.length === 1 ? mean[0] : mean, std: std.length === 1 ? std[0] : std };
}

/** Reads a `--vary key=value` value as the flag's type. */
export function parseFlagValue(key: FlagName, value: string): unknown {
  const spec: FlagSpec = TRAIN_FLAGS[key];
  if (spec.type === 'number') {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new UsageError(`--vary ${key}=${value}: expected a number`);
    return n;
  }
  if (spec.type === 'boolean') {
    if (value !== 'true' && value !== 'false') throw new UsageError(`--vary ${key}=${value}: expected true or false`);
    return value === 'true';
  }
  return value;
}
