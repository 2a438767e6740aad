import { join } from 'node:path';
import { asInputError, CnnlabError, InputError, UsageError } from '../common/errors.ts';
import { readJsonFile } from '../common/json.ts';
import { type DataRef, datasetClasses, datasetName, isFolderRef, knownStats, openDataset } from '../datasets/open.ts';
import { type ChannelOrder, conversionOf, describeConversion, FOLDER_PREFIX, type ImageConversion, type ResizeMode } from '../datasets/registry.ts';
import { normalizationFor, type TrainSpec } from '../graph-builder/artifacts/build.ts';
import { type Architecture, loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { parseInputSize } from '../graph-builder/import/onnx-model.ts';
import type { Recipe } from '../graph-builder/dsl/presets.ts';
import type { AugmentSettings } from './augment.ts';
import type { EpName } from '../runtime/ort.ts';
import { type InputRange, type Normalization, normalizationMismatch, type OutputKind } from '../graph-builder/model.ts';
import { checkFlags, checkNumber, FLAG_NAMES, type FlagName, type FlagSpec, parseNormalize, pickFlags, TRAIN_FLAGS, type TrainFlags } from './flags.ts';
import { hyperAt, SCHEDULES, type ScheduleName, scheduleName, scheduleOf } from './schedule.ts';
import { type OptimizerName, optimizerEntry, trainSpecFor } from './optimizers/index.ts';

/** Everything a run needs, resolved from the preset's recipe and the flags; saved as config.json. */
export interface RunConfig {
  architecture: string;
  archFile?: string;
  /** An imported ONNX model (`--model`). */
  modelFile?: string;
  /** The value a white pixel has at the model's input. */
  inputRange: InputRange;
  /** A built-in dataset's name, or `folder:<name>` for image folders in dataDir. */
  dataset: string;
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
  normalization: Normalization;
  /** How image-folder images become the model's planes (channel order, resizing); absent for the default (RGB, stretched). */
  conversion?: ImageConversion;
  shuffle: boolean;
  limitTrain?: number;
  /** Training images held out for validation: a count, or a fraction below 1; 0 for none. */
  valSplit: number;
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

/** Training images a new run holds out for validation (issue 17: 5,000 of MNIST's 60,000). */
export const DEFAULT_VAL_SPLIT = 5000;
/** The share an image folder holds out instead: its size is the user's, often a few hundred images. */
export const DEFAULT_FOLDER_VAL_SPLIT = 0.1;

/** K steps per session run; measured on the 2-core machine (see README, performance). */
export const DEFAULT_STEPS_PER_RUN = 8;

/** What --augment turns on for a preset whose seed did not augment. */
const DEFAULT_AUGMENT: AugmentSettings = { rotate: 7, translate: 2, jitter: 0.3 };

/** The augmentation --erase adds to where a preset has none: no warp, no jitter. */
const NO_WARP: AugmentSettings = { rotate: 0, translate: 0, jitter: 0 };

const DEFAULT_ONECYCLE: NonNullable<Recipe['onecycle']> = { pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, momentumRange: [0.85, 0.95] };

/** A flag's value, checked against its range in the table (a bad one is a one-line UsageError). */
function num(f: TrainFlags, k: FlagName): number | undefined {
  const spec: FlagSpec = TRAIN_FLAGS[k];
  return spec.type === 'number' ? checkNumber(f[k] as number | undefined, `--${k}`, spec.range) : undefined;
}

/** The data a set of flags names (the preset's dataset where they name none). */
export function dataRefOf(f: TrainFlags, arch?: Architecture): DataRef {
  return { dataset: f.dataset ?? (f['data-dir'] && isFolderRef({ dataDir: f['data-dir'] }) ? undefined : arch?.recipe.dataset), dataDir: f['data-dir'] };
}

/**
 * Resolves a run's configuration; every invalid flag is a one-line UsageError naming it.
 * A recipe that normalises by the dataset's own statistics needs them known: built in for
 * MNIST and Fashion-MNIST, measured by `withMeasuredStats` (into --normalize) for the rest.
 */
export function resolveRunConfig(arch: Architecture, f: TrainFlags, archFile?: string, modelFile?: string): RunConfig {
  const r = arch.recipe;
  checkFlags(f);
  for (const k of ['input-range', 'output-kind', 'input-size', 'new-head'] as const) if (f[k] !== undefined && !modelFile) throw new UsageError(`--${k}: applies to an imported model (--model model.onnx)`);
  const ref = dataRefOf(f, arch);
  const dataset = datasetName(ref, r.dataset);
  const opt = f.opt as OptimizerName | undefined;
  const optimizer = opt ?? r.optimizer;
  const entry = optimizerEntry(optimizer, opt ? '--opt' : `${arch.id}: recipe optimizer`);
  const sameOptimizer = optimizer === r.optimizer;
  const lr = num(f, 'lr') ?? (sameOptimizer ? r.lr : entry.lr);
  if (lr === 0) throw new UsageError('--lr: expected a number > 0, got 0');
  // The per-step "momentum" input is beta1 for Adam and AdamW: it defaults to theirs and needs no buffer.
  const momentum = num(f, 'momentum') ?? entry.beta1 ?? (sameOptimizer ? r.momentum : 0);
  const schedule = f.schedule !== undefined ? (f.schedule as ScheduleName) : scheduleName(r.schedule, `${arch.id}: recipe schedule`);
  const train = trainSpecFor(
    { ...arch, recipe: { ...r, schedule } },
    {
      opt,
      momentum: entry.kind.momentumInput === 'beta1' ? 0 : momentum,
      weightDecay: num(f, 'weight-decay') ?? (sameOptimizer ? r.weightDecay : 0),
      nesterov: f.nesterov,
      smoothing: num(f, 'label-smoothing'),
    },
  );
  const epochs = num(f, 'epochs') ?? r.epochs;
  const valSplit = num(f, 'val-split') ?? (isFolderRef(ref) ? DEFAULT_FOLDER_VAL_SPLIT : DEFAULT_VAL_SPLIT);
  if (valSplit >= 1 && !Number.isInteger(valSplit)) throw new UsageError(`--val-split: expected a whole number of images, or a fraction below 1, got ${valSplit}`);
  const erase = num(f, 'erase');
  if (erase !== undefined && f.augment === false) throw new UsageError('--erase: random erasing is augmentation, which --no-augment turns off');
  const chosen = f.augment === false ? null : (r.augment ?? (f.augment ? DEFAULT_AUGMENT : null));
  const augment = erase === undefined ? chosen : { ...(chosen ?? NO_WARP), erase };
  const ep = (f.ep as EpName | undefined) ?? 'cpu';
  return {
    architecture: arch.id,
    archFile,
    modelFile,
    inputRange: f['input-range'] === '0..255' ? 255 : f['input-range'] === '0..1' ? 1 : (r.inputRange ?? 1),
    dataset,
    dataDir: f['data-dir'],
    epochs,
    batch: num(f, 'batch') ?? r.batch,
    train,
    lr,
    momentum,
    schedule,
    stepEpochs: num(f, 'step-epochs') ?? Math.max(1, Math.floor(epochs / 3)),
    gamma: num(f, 'gamma') ?? 0.1,
    onecycle: r.onecycle ?? DEFAULT_ONECYCLE,
    augment,
    normalization: runNormalization(arch, f, dataset),
    conversion: runConversion(arch, f, dataset),
    shuffle: f.shuffle ?? r.shuffle,
    limitTrain: num(f, 'limit-train'),
    valSplit,
    seed: num(f, 'seed') ?? 0,
    ep,
    threads: num(f, 'threads'),
    deviceId: num(f, 'device-id') ?? 0,
    stepsPerRun: num(f, 'steps-per-run') ?? DEFAULT_STEPS_PER_RUN,
    checkpointEvery: num(f, 'checkpoint-every') ?? 60,
    evalBatch: 1000,
    // The default is written into the flags, so a run resumed under a later default keeps its split.
    flags: { ...pickFlags(f), 'val-split': valSplit },
  };
}

/** --normalize (else the recipe's), its values per channel as many as the model's input channels. */
function runNormalization(arch: Architecture, f: TrainFlags, dataset: string): Normalization {
  const n = parseNormalize(f.normalize) ?? normalizationFor(arch, { name: dataset, title: dataset, classes: [], ...knownStats(dataset) });
  const wrong = normalizationMismatch(n, arch.model.inputShape[0]);
  if (wrong) throw new UsageError(`--normalize: ${wrong}`);
  return n;
}

/** The run's input preparation in one line, where it is more than a scalar normalisation of RGB images stretched to the input (the run header prints it). */
export function describeRunInput(cfg: Pick<RunConfig, 'normalization' | 'conversion'>): string | undefined {
  const { mean, std } = cfg.normalization;
  if (!cfg.conversion && !Array.isArray(mean) && !Array.isArray(std)) return undefined;
  const stat = (v: number | number[]) => (Array.isArray(v) ? `[${v.join(', ')}]` : String(v));
  return `input: (x - ${stat(mean)}) / ${stat(std)}${cfg.conversion ? `; images read as ${describeConversion(cfg.conversion)}` : ''}`;
}

/** The flags' (else the recipe's) conversion of image-folder images; a 1-channel model in BGR, or a flag without image folders, is one line. */
function runConversion(arch: Architecture, f: TrainFlags, dataset: string): ImageConversion | undefined {
  const given = conversionOf(f['channel-order'] as ChannelOrder | undefined, f.resize as ResizeMode | undefined);
  if (f['channel-order'] === 'bgr' && arch.model.inputShape[0] !== 3) throw new UsageError(`--channel-order: bgr applies to a 3-channel (RGB) model; this one takes ${arch.model.inputShape[0]} channel${arch.model.inputShape[0] === 1 ? '' : 's'}`);
  const folder = dataset.startsWith(FOLDER_PREFIX);
  if (given && !folder) throw new UsageError(`--${given.resize ? 'resize' : 'channel-order'}: applies to image folders (--data-dir DIR with train/<class>/); ${dataset}'s images are read as they are`);
  if (!folder) return undefined;
  // A model cnnlab trained keeps its conversion unless a flag says otherwise.
  const saved = arch.recipe.conversion;
  return conversionOf((f['channel-order'] as ChannelOrder | undefined) ?? saved?.channelOrder, (f.resize as ResizeMode | undefined) ?? saved?.resize);
}

/** The architecture a run config names: a preset, a DSL file, or an imported ONNX model. */
export function loadRunArchitecture(cfg: Pick<RunConfig, 'architecture' | 'archFile' | 'modelFile' | 'flags' | 'dataset'>): Promise<Architecture> {
  const classes = runClasses(cfg).length;
  const model = cfg.modelFile
    ? { file: cfg.modelFile, outputKind: cfg.flags['output-kind'] as OutputKind | undefined, inputSize: parseInputSize(cfg.flags['input-size'] as string | undefined), classes, newHead: cfg.flags['new-head'] === true }
    : undefined;
  return loadArchitecture(cfg.archFile || cfg.modelFile ? undefined : cfg.architecture, cfg.archFile, {}, model, classes);
}

/**
 * A new run's flags with the training set's pixel mean and std written in as --normalize, where
 * the recipe normalises by them and the registry does not know them (image folders, KMNIST,
 * EMNIST): measured once on the data as the model sees it, then fixed for the run, its resume
 * and its sweep identity.
 */
export async function withMeasuredStats(arch: Architecture, f: TrainFlags): Promise<TrainFlags> {
  if (f.normalize !== undefined || arch.recipe.normalize !== 'dataset') return f;
  const ref = dataRefOf(f, arch);
  if (knownStats(datasetName(ref, arch.recipe.dataset))) return f;
  const data = await openDataset(ref, arch.model.inputShape, { conversion: runConversion(arch, f, datasetName(ref, arch.recipe.dataset)) });
  return { ...f, normalize: `${data.info.mean.toPrecision(6)},${data.info.std.toPrecision(6)}` };
}

/** The class names of a run's data (an image folder's are listed from it, without reading images). */
function runClasses(cfg: Pick<RunConfig, 'dataset' | 'flags'>): readonly string[] {
  return datasetClasses({ dataset: cfg.dataset, dataDir: cfg.flags['data-dir'] });
}

/**
 * A run folder's config.json, re-resolved from its saved flags so that a damaged file is caught
 * like a bad flag (resume and transfer read runs through this).
 */
export async function readRunConfig(dir: string, o: { continuing?: boolean } = {}): Promise<RunConfig> {
  const path = join(dir, 'config.json');
  let saved: Partial<RunConfig> | null;
  try {
    // A config.json is a few kB; 1 MB is far beyond any real one.
    saved = readJsonFile(path, 1024 * 1024) as Partial<RunConfig> | null;
  } catch (err) {
    throw asInputError(err);
  }
  if (typeof saved !== 'object' || saved === null || typeof saved.architecture !== 'string' || typeof saved.flags !== 'object' || saved.flags === null) {
    throw new InputError(`${path}: not a cnnlab run config (architecture and flags expected)`);
  }
  // Runs from before the validation split trained on every training image.
  if (saved.flags['val-split'] === undefined) saved.flags['val-split'] = 0;
  try {
    const arch = await loadRunArchitecture(saved as RunConfig);
    const cfg = resolveRunConfig(arch, saved.flags, saved.archFile, saved.modelFile);
    // Set by transfer, not by a flag: a fine-tuning run with frozen features stays frozen.
    if (saved.freeze === 'features') cfg.freeze = 'features';
    const drift = o.continuing ? recipeDrift(saved, cfg) : undefined;
    if (drift) throw new InputError(`the run was started by a build that resolved its recipe differently: ${drift}; finish it with that build, or start a new run`);
    return cfg;
  } catch (err) {
    if (err instanceof CnnlabError) throw new InputError(`${path}: ${err.message}`);
    throw err;
  }
}

/**
 * The first recipe field this build resolves differently from the resolved config the run saved
 * when it started (a preset's recipe changed in between: continuing would mix two recipes in one
 * run). Fields the saved config lacks (a build before they existed) are not compared.
 */
function recipeDrift(saved: Partial<RunConfig>, cfg: RunConfig): string | undefined {
  const now = JSON.parse(recipeOf(cfg)) as Record<string, unknown>;
  for (const [k, v] of Object.entries(now)) {
    // The architecture's id may name default options or not; the model itself is loaded from the
    // saved id, and the checkpoint's parameter shapes are checked against it.
    if (!(k in saved) || k === 'architecture') continue;
    const was = canonicalJson((saved as Record<string, unknown>)[k]);
    const is = canonicalJson(v);
    if (was !== is) return `${k} was ${was}, this build makes it ${is}`;
  }
  return undefined;
}

/** JSON with object keys sorted, so two equal values written in another key order compare equal. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** What a run computes: its resolved config without how and where it runs (and, with `epochs: false`, without its length). */
export function recipeOf(cfg: RunConfig, o: { epochs?: boolean } = {}): string {
  const { flags, ep, threads, deviceId, stepsPerRun, checkpointEvery, dataDir, epochs, ...recipe } = cfg;
  return JSON.stringify(o.epochs === false ? recipe : { ...recipe, epochs });
}

/** The recipe flags that differ between two flag sets, as `name=value` (a one-line explanation). */
export function recipeDifferences(saved: TrainFlags, wanted: TrainFlags): { saved: string[]; wanted: string[] } {
  const out = { saved: [] as string[], wanted: [] as string[] };
  for (const k of FLAG_NAMES) {
    if (!TRAIN_FLAGS[k].recipe || saved[k] === wanted[k]) continue;
    out.saved.push(`${k}=${saved[k] ?? '(default)'}`);
    out.wanted.push(`${k}=${wanted[k] ?? '(default)'}`);
  }
  return out;
}

export interface ResumeRequest {
  /** The flags given with --resume. */
  given: TrainFlags;
  /** A model named with --resume (a preset, --arch-file or --model), if any. */
  model?: { arch?: string; archFile?: string; modelFile?: string };
  /** Where the checkpoint stands. */
  step: number;
  stepsPerEpoch: number;
}

/**
 * The config a resumed run continues with. How it runs (--ep, --threads, --steps-per-run, ...)
 * may change; `--epochs N` extends (or shortens, not below what is done) the run; any other flag
 * that would change what it computes, or another model, is a one-line UsageError naming it.
 * Returns the config and what changed, to say so.
 */
export async function resumeConfig(dir: string, saved: RunConfig, r: ResumeRequest): Promise<{ cfg: RunConfig; notes: string[] }> {
  const m = r.model ?? {};
  const other = (m.modelFile && m.modelFile !== saved.modelFile) || (m.archFile && m.archFile !== saved.archFile) || (m.arch && m.arch !== saved.architecture);
  if (other) throw new UsageError(`--resume: the run in ${dir} trains ${saved.architecture}; ${m.arch ?? m.archFile ?? m.modelFile} was named (a resumed run keeps its model; start a new run with another --out)`);
  checkFlags(r.given);
  const arch = await loadRunArchitecture(saved);
  const conflicts: string[] = [];
  const runFlags: TrainFlags = {};
  for (const k of FLAG_NAMES) {
    const v = r.given[k];
    if (v === undefined || k === 'epochs') continue;
    if (!TRAIN_FLAGS[k].recipe) {
      (runFlags as Record<string, unknown>)[k] = v;
      continue;
    }
    const trial = resolveRunConfig(arch, { ...saved.flags, [k]: v }, saved.archFile, saved.modelFile);
    if (recipeOf(trial, { epochs: false }) !== recipeOf(saved, { epochs: false })) conflicts.push(`--${k} ${String(v)}`);
  }
  if (conflicts.length) {
    throw new UsageError(`--resume: ${conflicts.join(', ')} would change what the run in ${dir} computes; a resumed run keeps its recipe (only --epochs and how it runs may change): start a new run with another --out`);
  }
  const done = Math.ceil(r.step / r.stepsPerEpoch);
  const epochs = r.given.epochs ?? saved.epochs;
  if (epochs < done) throw new UsageError(`--epochs ${epochs}: the run in ${dir} has already trained ${done} epochs`);
  const cfg = resolveRunConfig(arch, { ...saved.flags, ...runFlags, epochs }, saved.archFile, saved.modelFile);
  if (saved.freeze) cfg.freeze = saved.freeze;
  const notes: string[] = [];
  if (epochs !== saved.epochs) {
    const before = hyperAt(scheduleOf(saved, r.stepsPerEpoch), r.step).lr;
    const after = hyperAt(scheduleOf(cfg, r.stepsPerEpoch), r.step).lr;
    const spans = SCHEDULES[saved.schedule].spansRun(saved);
    notes.push(
      `--epochs ${epochs}: the run now ends after ${epochs} epochs instead of ${saved.epochs}` +
        (spans
          ? `; its ${saved.schedule} schedule spans the whole run, so it is recomputed over ${epochs} epochs: at step ${r.step} the learning rate goes from ${before.toExponential(2)} to ${after.toExponential(2)} and follows the new curve (the steps already taken keep the old one)`
          : ''),
    );
  }
  return { cfg, notes };
}
