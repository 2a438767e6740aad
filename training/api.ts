/**
 * The programmatic training API: `train` takes the CLI's training flags as camelCase options and
 * a model (a preset, a DSL model, an architecture file or an ONNX model), trains it into a run
 * folder and resolves with plain objects. `cnnlab train` calls it.
 */
import { accessSync, constants, existsSync, rmdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { asInputError, UsageError } from '../common/errors.ts';
import { ensureDir, writeFileAtomic } from '../common/files.ts';
import { plural } from '../common/text.ts';
import { datasetClasses } from '../datasets/open.ts';
import { FOLDER_PREFIX } from '../datasets/registry.ts';
import { readCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { type Architecture, architectureFromLayers, loadArchitecture } from '../graph-builder/dsl/arch.ts';
import type { Sequential } from '../graph-builder/dsl/layers.ts';
import { parseInputSize } from '../graph-builder/import/onnx-model.ts';
import type { OutputKind } from '../graph-builder/model.ts';
import { describeRunInput, readRunConfig, resolveRunConfig, resumeConfig, type RunConfig, withMeasuredStats } from './config.ts';
import { fit, type FitOptions } from './fit.ts';
import { FLAG_NAMES, type FlagName, TRAIN_FLAGS, type TrainFlags } from './flags.ts';
import { chosenEpoch, type EpochMetrics } from './run-folder.ts';
import { optimizerKind } from './optimizers/index.ts';
import { type ImageSet, splitOf } from './model-api.ts';

export type { EpochMetrics } from './run-folder.ts';
export type { RunConfig } from './config.ts';

/** `weight-decay` -> `weightDecay`. */
type CamelCase<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;
type SettingValue<S> = S extends { type: 'number' } ? number : S extends { type: 'boolean' } ? boolean : S extends { choices: readonly (infer C)[] } ? C : string;

/** Every `cnnlab train` flag as an option: `--weight-decay 5e-4` is `weightDecay: 5e-4` (see `cnnlab train --help`). */
export type TrainSettings = { -readonly [K in FlagName as CamelCase<K>]?: SettingValue<(typeof TRAIN_FLAGS)[K]> };

const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** A DSL model built in code (`sequential(...)`), with the name its run and files take (default `model`). */
export type CodeModel = Sequential & { name?: string };

/**
 * The model to train: a preset spelling (`'partB'`, `'jhu-net:width=2'`), a DSL model built in
 * code, an architecture file (.ts, .js or .json), or an ONNX classifier to train or fine-tune.
 */
export type ModelSource = string | CodeModel | { archFile: string } | { modelFile: string };

/** One training step: its number in the run (from 1), its training loss and its learning rate. */
export interface StepInfo {
  step: number;
  loss: number;
  lr: number;
}

/** What fit is asked to stop with: set `requested` to stop after the current chunk of K steps (a checkpoint is saved). */
export type StopControl = NonNullable<FitOptions['stop']>;

/** Training images in memory: labels are class indices (the model's outputs), 0..255. */
export interface TrainingData {
  train: ImageSet;
  test: ImageSet;
}

/** The folder in a run folder that holds the images a run was given in memory. */
const MEMORY_FOLDER = 'data';

export interface TrainOptions extends TrainSettings {
  /** The model; may be left out with `resume`, which continues the run in `out`. */
  model?: ModelSource;
  /** The run folder (default runs/<model>-<dataset>, or -2, -3, ... when taken). */
  out?: string;
  /** Images in memory instead of a dataset or dataDir (written into the run folder as image folders, data/). */
  data?: TrainingData;
  /** Continue the run in `out` from its checkpoint (`epochs` may extend it). */
  resume?: boolean;
  /** Called with each epoch's metrics once the epoch is evaluated and its models written. */
  onEpochEnd?: (m: EpochMetrics) => void;
  /** Called after each training step (in runs of K steps: fit calls back when a run ends). */
  onStep?: (s: StepInfo) => void;
  /** Aborting stops after the current chunk of K steps with a checkpoint: the result says `interrupted`, `resume: true` continues. */
  signal?: AbortSignal;
  /** Lines the run says (header, notes, one per epoch); default console.log. */
  log?: (line: string) => void;
  /** A progress bar on stderr (default: when stderr is a terminal). */
  progress?: boolean;
  /** The CLI's signal handling (armed once set-up is done); `signal` is the way for code. */
  stop?: StopControl;
}

export interface TrainResult {
  /** The run folder: config.json, metrics.jsonl, checkpoint.ckpt, best.onnx, last.onnx, TensorBoard events. */
  runDir: string;
  /** Every epoch the run holds (a resumed run's earlier ones included). */
  epochs: EpochMetrics[];
  /** The epoch best.onnx holds: best validation accuracy, else best test accuracy. */
  best?: EpochMetrics;
  /** The trained models (present once an epoch has finished). */
  models: { best: string; last: string };
  /** Stopped by `signal` (or the CLI's Ctrl-C) before the last epoch; a checkpoint holds the steps done. */
  interrupted: boolean;
  /** The execution provider it ran on. */
  runtime: string;
  /** The resolved run configuration (what config.json holds). */
  config: RunConfig;
}

/** The options' training flags, keyed as the CLI spells them; an option train does not know is one line. */
function flagsOf(o: TrainSettings & Record<string, unknown>, known: readonly string[] = []): TrainFlags {
  const flags: Record<string, unknown> = {};
  const names = new Set<string>(known);
  for (const k of FLAG_NAMES) {
    names.add(camel(k));
    const v = o[camel(k)];
    if (v !== undefined) flags[k] = v;
  }
  for (const k of Object.keys(o)) if (!names.has(k)) throw new UsageError(`${k}: not an option (expected one of ${[...names].join(', ')})`);
  return flags as TrainFlags;
}

/** Training flags as options (`weight-decay` -> `weightDecay`): what the CLI passes to train. */
export function settingsOf(flags: TrainFlags): TrainSettings {
  return Object.fromEntries(Object.entries(flags).map(([k, v]) => [camel(k), v])) as TrainSettings;
}

const TRAIN_OPTIONS = ['model', 'data', 'out', 'resume', 'onEpochEnd', 'onStep', 'signal', 'log', 'progress', 'stop'] as const;

/** runs/<arch>-<dataset>, or -2, -3, ... when taken. */
function defaultRunDir(cfg: Pick<RunConfig, 'architecture' | 'dataset'>): string {
  const clean = (s: string) => s.replace(/^(file|onnx|folder):/, '').replace(/\.(onnx|json|ts|js)$/, '').replace(/[^A-Za-z0-9._=-]+/g, '_');
  const base = `runs/${clean(cfg.architecture)}-${clean(cfg.dataset)}`;
  if (!existsSync(base)) return base;
  for (let i = 2; ; i++) if (!existsSync(`${base}-${i}`)) return `${base}-${i}`;
}

/**
 * Fails early, with the flag named, when the run folder cannot be created or written. It creates
 * the missing folders to find out (as root, access() calls /proc writable; mkdir says otherwise)
 * and removes them again: nothing stays behind until the run opens its folder, after the
 * provider and the sessions have opened.
 */
function checkWritable(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.push(d);
  try {
    ensureDir(dir);
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new UsageError(`--out ${dir}: cannot create or write the run folder (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    // Deepest first; a folder something else has meanwhile put a file in stays.
    for (const d of missing) {
      try {
        rmdirSync(d);
      } catch {
        break;
      }
    }
  }
}

/** The run in `dir` to resume: its saved config (see readRunConfig). */
export async function resumedConfig(dir: string): Promise<RunConfig> {
  const path = `${dir}/config.json`;
  if (!existsSync(path)) throw new UsageError(`--resume: ${path} not found`);
  return readRunConfig(dir, { continuing: true });
}

/** A model source as the CLI names its kind: a preset, --arch-file or --model (a DSL model is written to the run folder as JSON). */
function modelNames(m: ModelSource | undefined): { arch?: string; archFile?: string; modelFile?: string } {
  if (m === undefined || typeof m === 'string') return { arch: m };
  if ('archFile' in m) return { archFile: m.archFile };
  if ('modelFile' in m) return { modelFile: m.modelFile };
  return {};
}

/**
 * The architecture a model source names, its head fitted to `classes` where given; an imported
 * model reads `outputKind` and `inputSize`. What cannot be used is an InputError (exit 2).
 */
export async function loadModelSource(m: ModelSource | undefined, o: { outputKind?: OutputKind; inputSize?: [number, number] } = {}, classes?: number): Promise<Architecture> {
  if (typeof m === 'object' && 'layers' in m) {
    const name = m.name ?? 'model';
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new UsageError(`model.name: expected letters, digits, '.', '_' or '-' (it names the model's file in the run folder), got '${name}'`);
    return architectureFromLayers(m, `${name}.json`, classes);
  }
  const n = modelNames(m);
  const model = n.modelFile ? { file: n.modelFile, outputKind: o.outputKind, inputSize: o.inputSize } : undefined;
  return loadArchitecture(n.arch, n.archFile, {}, model, classes).catch((err: unknown) => {
    throw asInputError(err);
  });
}

/** The class count of images in memory: one more than the largest label (the labels are the classes' indices). */
function classCount(d: TrainingData): number {
  let max = 0;
  for (const set of [d.train, d.test]) for (const l of set.labels) max = Math.max(max, l);
  return max + 1;
}

/**
 * Images in memory as image folders train/<class>/ and test/<class>/ under `dir`, one PNG per
 * image, the class folders named by label (zero-padded, so they sort in label order): the run
 * reads them as it reads any image folder, and its resume finds them in its run folder.
 */
async function writeImageFolders(dir: string, d: TrainingData): Promise<string> {
  const width = String(classCount(d) - 1).length;
  for (const [split, set] of [['train', d.train], ['test', d.test]] as const) {
    const { images, count, shape } = splitOf(set, `data.${split}`);
    const [c, h, w] = shape;
    if (c !== 1 && c !== 3) throw new UsageError(`data.${split}: images of ${c} channels; expected 1 (grey) or 3 (RGB)`);
    const size = c * h * w;
    for (let i = 0; i < count; i++) {
      const folder = join(dir, split, String(set.labels[i]).padStart(width, '0'));
      ensureDir(folder);
      const interleaved = Buffer.alloc(size);
      for (let ch = 0; ch < c; ch++) for (let p = 0; p < h * w; p++) interleaved[p * c + ch] = images[i * size + ch * h * w + p];
      writeFileAtomic(join(folder, `${i}.png`), await sharp(interleaved, { raw: { width: w, height: h, channels: c } }).png().toBuffer());
    }
  }
  return resolve(dir);
}

/** A new run's config and folder; a DSL model built in code is written into the folder, where the run (and its resume) loads it from, and so are images given in memory. */
async function newRun(o: TrainOptions, flags: TrainFlags): Promise<{ cfg: RunConfig; out: string }> {
  if (o.model === undefined) throw new UsageError('train: name a model (a preset such as partB, a DSL model, { archFile } or { modelFile })');
  if (o.data && (flags.dataset !== undefined || flags['data-dir'] !== undefined)) throw new UsageError('data: give images in memory, a dataset or a dataDir, not two of them');
  // The run records where its images are, so eval, predict and resume find them from any folder.
  if (flags['data-dir'] !== undefined) flags['data-dir'] = resolve(flags['data-dir']);
  const classes = o.data ? classCount(o.data) : datasetClasses({ dataset: flags.dataset, dataDir: flags['data-dir'] }).length;
  const arch = await loadModelSource(o.model, { outputKind: flags['output-kind'] as OutputKind | undefined, inputSize: parseInputSize(flags['input-size']) }, classes);
  let out = o.out;
  if (o.data) {
    out ??= defaultRunDir({ architecture: arch.id, dataset: `${FOLDER_PREFIX}${MEMORY_FOLDER}` });
    checkNewRun(out);
    flags['data-dir'] = await writeImageFolders(join(out, MEMORY_FOLDER), o.data);
  }
  const n = modelNames(o.model);
  const cfg = resolveRunConfig(arch, await withMeasuredStats(arch, flags), n.archFile, n.modelFile);
  out ??= defaultRunDir(cfg);
  checkNewRun(out);
  if (arch.layers && typeof o.model === 'object' && 'layers' in o.model) {
    cfg.archFile = join(out, arch.id.replace(/^file:/, ''));
    ensureDir(out);
    writeFileAtomic(cfg.archFile, `${JSON.stringify({ input: o.model.input, layers: o.model.layers }, null, 2)}\n`);
  }
  return { cfg, out };
}

/** The folder of a new run: none there yet, and writable. */
function checkNewRun(out: string): void {
  if (existsSync(`${out}/checkpoint.ckpt`)) throw new UsageError(`--out ${out}: a run is already there; add --resume to continue it or choose another folder`);
  checkWritable(out);
}

/** The run in `out` continued: its saved config with the options that may change (epochs, how it runs). */
async function resumedRun(o: TrainOptions, flags: TrainFlags, log: (line: string) => void): Promise<{ cfg: RunConfig; out: string }> {
  const out = o.out;
  if (!out) throw new UsageError('--resume: name the run folder with --out');
  if (o.data) throw new UsageError(`data: a resumed run reads the images it was given from ${join(out, MEMORY_FOLDER)}`);
  const saved = await resumedConfig(out);
  const ckpt = `${out}/checkpoint.ckpt`;
  if (!existsSync(ckpt)) throw new UsageError(`--resume: ${ckpt} not found; start the run without --resume`);
  const meta = readCheckpoint(ckpt).meta;
  const model = typeof o.model === 'object' && 'layers' in o.model ? { archFile: saved.archFile } : modelNames(o.model);
  const resumed = await resumeConfig(out, saved, { given: flags, model, step: Number(meta.step), stepsPerEpoch: Number(meta.stepsPerEpoch) });
  for (const note of resumed.notes) log(note);
  return { cfg: resumed.cfg, out };
}

/** The run's first line: model, data, recipe and folder. */
function header(cfg: RunConfig, out: string): string {
  const opt = cfg.train.optimizer;
  return (
    `cnnlab train ${cfg.architecture} on ${cfg.dataset}: ${plural(cfg.epochs, 'epoch')}, batch ${cfg.batch}, ${opt.name} lr ${cfg.lr}` +
    `${optimizerKind(opt).momentumInput === 'beta1' ? '' : ` momentum ${cfg.momentum}`}${opt.weightDecay ? ` wd ${opt.weightDecay}` : ''}, ${cfg.schedule} schedule` +
    `${cfg.augment ? ', augmented' : ''}, K=${cfg.stepsPerRun} steps per run -> ${out}`
  );
}

/** The stop request an AbortSignal makes: set when it aborts. */
function stopOn(signal: AbortSignal | undefined): { stop?: StopControl; done: () => void } {
  if (!signal) return { done: () => undefined };
  const stop: StopControl = { requested: false };
  const abort = () => {
    stop.requested = true;
  };
  signal.addEventListener('abort', abort, { once: true });
  return { stop, done: () => signal.removeEventListener('abort', abort) };
}

/**
 * Trains a model into a run folder, as `cnnlab train` does; every option is a train flag in
 * camelCase, plus the model, the folder and the callbacks. Bad options reject with a one-line
 * UsageError naming the flag; a diverged run with a DivergedError (its last good checkpoint kept).
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const flags = flagsOf(o as TrainSettings & Record<string, unknown>, TRAIN_OPTIONS);
  o.signal?.throwIfAborted();
  const log = o.log ?? ((line: string) => console.log(line));
  const { cfg, out } = o.resume ? await resumedRun(o, flags, log) : await newRun(o, flags);
  log(header(cfg, out));
  const input = describeRunInput(cfg);
  if (input) log(input);
  const aborting = stopOn(o.signal);
  const onSteps = o.onStep && ((first: number, losses: ArrayLike<number>, lrs: ArrayLike<number>) => {
    for (let k = 0; k < losses.length; k++) o.onStep!({ step: first + k + 1, loss: losses[k], lr: lrs[k] });
  });
  const fitOptions: FitOptions = {
    runDir: out,
    resume: o.resume ?? false,
    stop: o.stop ?? aborting.stop,
    progress: o.progress,
    // Without a log of its own, fit prints the epochs and, off a terminal, timed progress lines.
    log: o.log,
    onSteps,
    onEpoch: o.onEpochEnd,
  };
  try {
    const result = await fit(cfg, fitOptions);
    return { runDir: out, epochs: result.epochs, best: chosenEpoch(result.epochs), models: { best: join(out, 'best.onnx'), last: join(out, 'last.onnx') }, interrupted: result.interrupted, runtime: result.runtime, config: cfg };
  } finally {
    aborting.done();
  }
}
