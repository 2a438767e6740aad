import { join } from 'node:path';
import { CnnlabError, UsageError } from '../common/errors.ts';
import { readJsonFile } from '../common/json.ts';
import { DATASET_NAMES, type DatasetName } from '../datasets/registry.ts';
import { normalizationFor, type TrainSpec, trainSpecFor } from '../graph-builder/artifacts/build.ts';
import { type Architecture, loadArchitecture } from '../graph-builder/dsl/arch.ts';
import type { OptimizerName, Recipe, ScheduleName } from '../graph-builder/dsl/presets.ts';
import type { AugmentSettings } from './augment.ts';
import { EP_NAMES, type EpName } from '../runtime/ort.ts';

/** Everything a run needs, resolved from the preset's recipe and the flags; saved as config.json. */
export interface RunConfig {
  architecture: string;
  archFile?: string;
  dataset: DatasetName;
  dataDir?: string;
  epochs: number;
  batch: number;
  train: TrainSpec;
  lr: number;
  momentum: number;
  schedule: ScheduleName;
  stepEpochs: number;
  gamma: number;
  onecycle: NonNullable<Recipe['onecycle']>;
  augment: AugmentSettings | null;
  normalization: { mean: number; std: number };
  shuffle: boolean;
  limitTrain?: number;
  seed: number;
  ep: EpName;
  threads?: number;
  deviceId: number;
  stepsPerRun: number;
  checkpointEvery: number;
  evalBatch: number;
  /** 'features': train only the linear layers (transfer learning). */
  freeze?: 'features';
  /** The flags it was resolved from; --resume resolves them again. */
  flags: TrainFlags;
}

/** The flags that shape the training graphs (build-graph takes these alone). */
export interface OptimizerFlags {
  opt?: string;
  lr?: number;
  momentum?: number;
  'weight-decay'?: number;
  nesterov?: boolean;
  'label-smoothing'?: number;
}

export interface TrainFlags extends OptimizerFlags {
  dataset?: string;
  'data-dir'?: string;
  epochs?: number;
  batch?: number;
  schedule?: string;
  'step-epochs'?: number;
  gamma?: number;
  augment?: boolean;
  ep?: string;
  threads?: number;
  'device-id'?: number;
  'steps-per-run'?: number;
  seed?: number;
  'limit-train'?: number;
  shuffle?: boolean;
  'checkpoint-every'?: number;
}

/** K steps per session run; measured on the 2-core machine (see README, performance). */
export const DEFAULT_STEPS_PER_RUN = 8;

/** What --augment turns on for a preset whose seed did not augment. */
const DEFAULT_AUGMENT: AugmentSettings = { rotate: 7, translate: 2, jitter: 0.3 };

const DEFAULT_ONECYCLE: NonNullable<Recipe['onecycle']> = { pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, momentumRange: [0.85, 0.95] };

function int(value: number | undefined, flag: string, lo: number, hi = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < lo || value > hi) throw new UsageError(`${flag}: expected a whole number in ${lo}..${hi}, got ${value}`);
  return value;
}

/** A number flag within lo..hi, or a one-line UsageError naming the flag. */
export function real(value: number | undefined, flag: string, lo: number, hi: number, hiOpen = false): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < lo || (hiOpen ? value >= hi : value > hi)) {
    throw new UsageError(`${flag}: expected a number in ${lo}..${hi}${hiOpen ? ' (exclusive)' : ''}, got ${value}`);
  }
  return value;
}

function oneOf<T extends string>(value: string | undefined, flag: string, choices: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value)) throw new UsageError(`${flag}: expected one of ${choices.join(', ')}, got '${value}'`);
  return value as T;
}

/** Resolves a run's configuration; every invalid flag is a one-line UsageError naming it. */
export function resolveRunConfig(arch: Architecture, f: TrainFlags, archFile?: string): RunConfig {
  const r = arch.recipe;
  const dataset = oneOf(f.dataset, '--dataset', DATASET_NAMES) ?? r.dataset;
  const optimizer = oneOf(f.opt, '--opt', ['sgd', 'adam', 'adamw', 'rmsprop'] as const satisfies readonly OptimizerName[]) ?? r.optimizer;
  const sameOptimizer = optimizer === r.optimizer;
  const adamLike = optimizer === 'adam' || optimizer === 'adamw';
  const lr = real(f.lr, '--lr', 0, 10) ?? (sameOptimizer ? r.lr : defaultLr(optimizer));
  if (lr === 0) throw new UsageError('--lr: expected a number > 0, got 0');
  // The per-step "momentum" input is beta1 for Adam and AdamW.
  const momentum = real(f.momentum, '--momentum', 0, 1, true) ?? (adamLike ? 0.9 : sameOptimizer ? r.momentum : 0);
  const schedule = oneOf(f.schedule, '--schedule', ['constant', 'step', 'onecycle', 'cosine'] as const) ?? r.schedule;
  const train = trainSpecFor(
    { ...arch, recipe: { ...r, schedule } },
    {
      opt: optimizer,
      momentum: adamLike ? 0 : momentum,
      weightDecay: real(f['weight-decay'], '--weight-decay', 0, 1) ?? (sameOptimizer ? r.weightDecay : 0),
      nesterov: f.nesterov,
      smoothing: real(f['label-smoothing'], '--label-smoothing', 0, 1, true),
    },
  );
  const epochs = int(f.epochs, '--epochs', 1, 10000) ?? r.epochs;
  const augment = f.augment === false ? null : (r.augment ?? (f.augment ? DEFAULT_AUGMENT : null));
  const ep = oneOf(f.ep, '--ep', EP_NAMES) ?? 'cpu';
  return {
    architecture: arch.id,
    archFile,
    dataset,
    dataDir: f['data-dir'],
    epochs,
    batch: int(f.batch, '--batch', 1, 65536) ?? r.batch,
    train,
    lr,
    momentum,
    schedule,
    stepEpochs: int(f['step-epochs'], '--step-epochs', 1) ?? Math.max(1, Math.floor(epochs / 3)),
    gamma: real(f.gamma, '--gamma', 0, 1) ?? 0.1,
    onecycle: r.onecycle ?? DEFAULT_ONECYCLE,
    augment,
    normalization: normalizationFor({ ...arch, recipe: r }, dataset),
    shuffle: f.shuffle ?? r.shuffle,
    limitTrain: int(f['limit-train'], '--limit-train', 1),
    seed: int(f.seed, '--seed', 0, 0xffffffff) ?? 0,
    ep,
    threads: int(f.threads, '--threads', 1, 256),
    deviceId: int(f['device-id'], '--device-id', 0, 64) ?? 0,
    stepsPerRun: int(f['steps-per-run'], '--steps-per-run', 1, 100000) ?? DEFAULT_STEPS_PER_RUN,
    checkpointEvery: real(f['checkpoint-every'], '--checkpoint-every', 0, 1e6) ?? 60,
    evalBatch: 1000,
    flags: pickFlags(f),
  };
}

const FLAG_NAMES: (keyof TrainFlags)[] = [
  'opt', 'lr', 'momentum', 'weight-decay', 'nesterov', 'label-smoothing', 'dataset', 'data-dir', 'epochs', 'batch', 'schedule',
  'step-epochs', 'gamma', 'augment', 'ep', 'threads', 'device-id', 'steps-per-run', 'seed', 'limit-train', 'shuffle', 'checkpoint-every',
];

/** Only the training flags (yargs adds aliases and positionals to its argument object). */
export function pickFlags(f: TrainFlags): TrainFlags {
  const out: Record<string, unknown> = {};
  for (const k of FLAG_NAMES) if (f[k] !== undefined) out[k] = f[k];
  return out as TrainFlags;
}

/** PyTorch's default learning rates, for an optimiser that replaces the preset's. */
function defaultLr(opt: OptimizerName): number {
  return opt === 'sgd' ? 0.01 : opt === 'rmsprop' ? 0.01 : 1e-3;
}

/**
 * A run folder's config.json, re-resolved from its saved flags so that a damaged file is caught
 * like a bad flag (resume and transfer read runs through this).
 */
export async function readRunConfig(dir: string): Promise<RunConfig> {
  const path = join(dir, 'config.json');
  // A config.json is a few kB; 1 MB is far beyond any real one.
  const saved = readJsonFile(path, 1024 * 1024) as Partial<RunConfig> | null;
  if (typeof saved !== 'object' || saved === null || typeof saved.architecture !== 'string' || typeof saved.flags !== 'object' || saved.flags === null) {
    throw new CnnlabError(`${path}: not a cnnlab run config (architecture and flags expected)`);
  }
  try {
    const arch = await loadArchitecture(saved.archFile ? undefined : saved.architecture, saved.archFile);
    const cfg = resolveRunConfig(arch, saved.flags, saved.archFile);
    // Set by transfer, not by a flag: a fine-tuning run with frozen features stays frozen.
    if (saved.freeze === 'features') cfg.freeze = 'features';
    return cfg;
  } catch (err) {
    if (err instanceof CnnlabError) throw new CnnlabError(`${path}: ${err.message}`);
    throw err;
  }
}
