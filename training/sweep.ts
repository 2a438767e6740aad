import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { asInputError, CnnlabError, DivergedError, InputError, UsageError } from '../common/errors.ts';
import { readJsonFile } from '../common/json.ts';
import { plural } from '../common/text.ts';
import { writeFileAtomic } from '../common/files.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { PRESETS } from '../graph-builder/dsl/presets.ts';
import { readRunConfig, recipeDifferences, recipeOf, resolveRunConfig, type RunConfig, withMeasuredStats } from './config.ts';
import { datasetClasses } from '../datasets/open.ts';
import { type FlagName, parseFlagValue, RECIPE_FLAGS, type TrainFlags } from './flags.ts';
import { CHECKPOINT, fit, type FitOptions } from './fit.ts';
import { chosenEpoch, readMetrics } from './run-folder.ts';
import { type Observation, type Space, suggestNew } from './tpe.ts';
import { Rng } from '../common/rng.ts';

/** One varied setting: a training flag (lr, opt, batch, ...) or a preset option (width, dropout, ...). */
export interface Axis {
  key: string;
  values: string[];
}

export interface Trial {
  id: string;
  /** The group it belongs to (a question of seed 004), for reports. */
  group: string;
  settings: Record<string, string>;
}

/** failed: a queued trial that threw outside training's own errors, or whose workers were lost too often. */
export type TrialStatus = 'pending' | 'done' | 'diverged' | 'invalid' | 'failed';

export interface TrialRecord extends Trial {
  status: TrialStatus;
  run: string;
  message?: string;
  /** The test accuracy of the epoch best.onnx holds (chosen by validation where the run has it). */
  best?: number;
  /** That epoch's validation accuracy (absent when the run held no images out). */
  validation?: number;
  parameters?: number;
  seconds?: number;
  /** The trial's identity: its resolved recipe (config.ts recipeOf), and the flags it came from. */
  recipe?: string;
  flags?: TrainFlags;
  /** Set when the trial continued from its run's checkpoint (after Ctrl-C, or a queue's worker lost). */
  resumed?: boolean;
  /** The queue's worker that finished it (hostname:pid). */
  worker?: string;
}

export interface SweepManifest {
  arch: string;
  base: TrainFlags;
  trials: TrialRecord[];
}

const STATUSES: readonly TrialStatus[] = ['pending', 'done', 'diverged', 'invalid', 'failed'];
/** sweep.json of a 10,000-trial sweep is about 5 MB. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** A sweep's JSON file; a damaged one is one line naming it, exit 2 (see common/errors.ts). */
const readJson = (path: string) => {
  try {
    return readJsonFile(path, MAX_MANIFEST_BYTES);
  } catch (err) {
    throw asInputError(err);
  }
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const optionalNumber = (v: unknown) => v === undefined || typeof v === 'number';

/**
 * What sweeps and searches rank a finished trial by: its validation accuracy where the run held
 * images out, so the test set never chooses a model; the test accuracy only for a run without.
 */
export const trialScore = (t: TrialRecord): number => t.validation ?? t.best ?? 0;

/** How a ranked trial reads: 'validation 99.46% (test 99.42%)', or 'test 99.51%'. */
export const scoreText = (t: TrialRecord): string =>
  t.validation !== undefined ? `validation ${(100 * t.validation).toFixed(2)}% (test ${(100 * (t.best ?? 0)).toFixed(2)}%)` : `test ${(100 * (t.best ?? 0)).toFixed(2)}%`;

/** Checks one trial record (a status.json, or an entry of sweep.json); returns why it is not one. */
function trialProblem(v: unknown): string | undefined {
  if (!isObject(v)) return 'not an object';
  for (const key of ['id', 'group', 'run'] as const) if (typeof v[key] !== 'string' || !v[key]) return `${key} must be a non-empty string`;
  if (!isObject(v.settings) || !Object.values(v.settings).every((x) => typeof x === 'string')) return 'settings must map names to strings';
  if (!STATUSES.includes(v.status as TrialStatus)) return `status must be one of ${STATUSES.join(', ')}`;
  for (const key of ['message', 'worker'] as const) if (v[key] !== undefined && typeof v[key] !== 'string') return `${key} must be a string`;
  if (v.resumed !== undefined && typeof v.resumed !== 'boolean') return 'resumed must be true or false';
  for (const key of ['best', 'validation', 'parameters', 'seconds'] as const) if (!optionalNumber(v[key])) return `${key} must be a number`;
  return undefined;
}

/** A trial's status.json, checked; a damaged one is a one-line error naming it. */
export function readTrialRecord(path: string): TrialRecord {
  const v = readJson(path);
  const problem = trialProblem(v);
  if (problem) throw new InputError(`${path}: not a trial status (${problem}); delete it to run the trial again`);
  return v as TrialRecord;
}

/** A sweep's sweep.json, checked; a damaged one is a one-line error naming it. */
export function readSweepManifest(path: string): SweepManifest {
  const v = readJson(path);
  const bad = (why: string): never => {
    throw new InputError(`${path}: not a sweep manifest (${why}); delete it and re-run the sweep to rebuild it from the trials' status.json files`);
  };
  if (!isObject(v)) return bad('not an object');
  if (typeof v.arch !== 'string' || !v.arch) bad('arch must be a non-empty string');
  if (!isObject(v.base)) bad('base must be an object of training flags');
  if (!Array.isArray(v.trials)) return bad('trials must be a list');
  for (const [i, t] of v.trials.entries()) {
    const problem = trialProblem(t);
    if (problem) bad(`trial ${i + 1}: ${problem}`);
  }
  return v as unknown as SweepManifest;
}

/** Parses `--vary key=v1,v2,...`. */
export function parseAxis(spec: string): Axis {
  const eq = spec.indexOf('=');
  if (eq < 1 || eq === spec.length - 1) throw new UsageError(`--vary ${spec}: expected key=value1,value2,...`);
  const values = spec.slice(eq + 1).split(',').map((v) => v.trim()).filter(Boolean);
  if (!values.length) throw new UsageError(`--vary ${spec}: no values`);
  return { key: spec.slice(0, eq).trim(), values };
}

/** The cartesian product of the axes, in a fixed order. */
export function grid(axes: Axis[], group = 'grid'): Trial[] {
  let trials: Record<string, string>[] = [{}];
  for (const a of axes) trials = trials.flatMap((t) => a.values.map((v) => ({ ...t, [a.key]: v })));
  return trials.map((settings) => ({ id: trialId(group, settings), group, settings }));
}

export function trialId(group: string, settings: Record<string, string>): string {
  const body = Object.entries(settings).map(([k, v]) => `${k}=${v}`).join(',');
  return `${group === 'grid' ? '' : `${group}--`}${body || 'base'}`.replace(/[^A-Za-z0-9._=,-]+/g, '_');
}

/** `--shard i/n`: trials whose index is i-1 modulo n, so n machines cover the grid exactly once. */
export function shard<T>(items: T[], spec: string | undefined): T[] {
  if (!spec) return items;
  const m = /^(\d+)\/(\d+)$/.exec(spec);
  const i = m ? Number(m[1]) : NaN;
  const n = m ? Number(m[2]) : NaN;
  if (!m || n < 1 || i < 1 || i > n) throw new UsageError(`--shard ${spec}: expected i/n with 1 <= i <= n, e.g. 2/4`);
  return items.filter((_, k) => k % n === i - 1);
}

/** Splits a trial's settings into training flags and preset options, checking each key. */
export function splitSettings(arch: string, settings: Record<string, string>): { flags: TrainFlags; options: Record<string, string> } {
  const presetName = arch.split(':')[0];
  const preset = PRESETS[presetName];
  const flags: Record<string, unknown> = {};
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(settings)) {
    if (preset?.options[k]) {
      options[k] = v;
      continue;
    }
    if (!(RECIPE_FLAGS as string[]).includes(k)) {
      const known = [...RECIPE_FLAGS, ...Object.keys(preset?.options ?? {})];
      throw new UsageError(`--vary ${k}: not a training flag or an option of ${presetName}; expected one of ${known.join(', ')}`);
    }
    flags[k] = parseFlagValue(k as FlagName, v);
  }
  return { flags: flags as TrainFlags, options };
}

export interface SweepOptions {
  arch: string;
  /** An imported ONNX model (`--model`) or a DSL file (`--arch-file`) the trials train; `arch` is then its id. */
  model?: string;
  archFile?: string;
  /** Discard trials whose folders hold another recipe and run them again. */
  force?: boolean;
  /** Where these trials stand in a longer series (search runs one at a time), for the [i/n] counter. */
  position?: { index: number; total: number };
  base: TrainFlags;
  trials: Trial[];
  dir: string;
  fit: Pick<FitOptions, 'progress' | 'log' | 'stop' | 'onEpoch'>;
  log?: (line: string) => void;
}

/** A trial resolved: its run config (undefined where its settings are invalid) and the flags it was resolved from. */
interface Planned {
  trial: Trial;
  run: string;
  flags: TrainFlags;
  cfg?: RunConfig;
  parameters?: number;
  invalid?: string;
}

async function plan(o: SweepOptions, trial: Trial): Promise<Planned> {
  const run = join(o.dir, trial.id);
  try {
    const { flags, options } = splitSettings(o.arch, trial.settings);
    const given = { ...o.base, ...flags };
    const classes = o.model ? undefined : datasetClasses({ dataset: given.dataset, dataDir: given['data-dir'] }).length;
    const arch = await loadArchitecture(o.model || o.archFile ? undefined : o.arch, o.archFile, options, o.model ? { file: o.model } : undefined, classes);
    const all = await withMeasuredStats(arch, given);
    return { trial, run, flags: all, cfg: resolveRunConfig(arch, all, o.archFile, o.model), parameters: arch.model.trainableCount };
  } catch (err) {
    if (!(err instanceof CnnlabError)) throw err;
    return { trial, run, flags: o.base, invalid: err.message };
  }
}

/** What a trial's folder holds: nothing yet, this trial (finished: its record), or another recipe (how it differs). */
type Holding = { kind: 'fresh' } | { kind: 'same'; done?: TrialRecord } | { kind: 'other'; saved: string[]; wanted: string[] };

/** Whether a trial's folder already holds this trial: the same resolved recipe (architecture, dataset, every flag that changes what it computes). */
async function holds(p: Planned): Promise<Holding> {
  const statusPath = join(p.run, 'status.json');
  if (existsSync(statusPath)) {
    const done = readTrialRecord(statusPath);
    if (p.cfg ? done.recipe === recipeOf(p.cfg) : done.status === 'invalid') return { kind: 'same', done };
    // A record from before trials kept their recipe says nothing of its flags.
    return { kind: 'other', ...(done.flags ? recipeDifferences(done.flags, p.flags) : { saved: [], wanted: [] }) };
  }
  if (!existsSync(join(p.run, 'config.json')) || !p.cfg) return { kind: 'fresh' };
  const saved = await readRunConfig(p.run, { continuing: true });
  return recipeOf(saved) === recipeOf(p.cfg) ? { kind: 'same' } : { kind: 'other', ...recipeDifferences(saved.flags, p.flags) };
}

/** A finished record from before trials kept their validation accuracy gets it from its run's metrics. */
function withValidation(t: TrialRecord): TrialRecord {
  if (t.status !== 'done' || t.validation !== undefined) return t;
  return { ...t, validation: chosenEpoch(readMetrics(t.run))?.valAcc };
}

/** A trial resolved and checked against its folder, ready to run. */
export interface PreparedTrial extends Planned {
  state: Holding;
}

/**
 * Resolves the trials and reads what their folders hold. A folder that holds another recipe
 * (the shared flags changed) stops everything before anything runs, with one line saying what
 * differs, unless `force` lets runTrial discard it.
 */
export async function prepareTrials(o: SweepOptions): Promise<PreparedTrial[]> {
  const planned = await Promise.all(o.trials.map((t) => plan(o, t)));
  const prepared = await Promise.all(planned.map(async (p) => ({ ...p, state: await holds(p) })));
  const clashes = prepared.filter((p) => p.state.kind === 'other');
  if (clashes.length && !o.force) {
    const p = clashes[0];
    const d = p.state as Extract<Holding, { kind: 'other' }>;
    const what = d.saved.length ? ` was run with ${d.saved.join(', ')}; this sweep asks for ${d.wanted.join(', ')}` : ' was run with another recipe';
    throw new UsageError(`${o.dir}: trial ${p.trial.id}${what}${clashes.length > 1 ? ` (and ${plural(clashes.length - 1, 'more trial', 'more trials')})` : ''}: use another --out, or --force to run them again`);
  }
  return prepared;
}

/**
 * Runs one prepared trial as a normal run folder (finished: its record as it was; unfinished:
 * resumed from its checkpoint) and writes its status.json; undefined when `stop` interrupted it.
 * `extra` goes into the record (the queue's worker name). A diverged or invalid trial is a record.
 */
export async function runTrial(p: PreparedTrial, o: Pick<SweepOptions, 'fit'>, counter: string, log: (line: string) => void, extra: Partial<TrialRecord> = {}): Promise<TrialRecord | undefined> {
  const { trial, run, state } = p;
  if (state.kind === 'other') rmSync(run, { recursive: true, force: true });
  else if (state.kind === 'same' && state.done) {
    log(`${counter}: ${state.done.status}, skipped (same recipe)`);
    return withValidation(state.done);
  }
  const resumed = existsSync(join(run, CHECKPOINT));
  log(`${counter}${resumed ? ' (resumed from its checkpoint)' : ''}`);
  const record: TrialRecord = { ...trial, status: 'pending', run, flags: p.flags, ...extra, ...(resumed ? { resumed } : {}) };
  const t0 = performance.now();
  try {
    if (!p.cfg) throw new CnnlabError(p.invalid!);
    record.recipe = recipeOf(p.cfg);
    const result = await fit(p.cfg, { ...o.fit, runDir: run, resume: resumed });
    if (result.interrupted) return undefined;
    record.status = 'done';
    const chosen = chosenEpoch(result.epochs);
    record.best = chosen?.testAcc;
    record.validation = chosen?.valAcc;
    record.parameters = p.parameters;
  } catch (err) {
    if (!(err instanceof CnnlabError)) throw err;
    record.status = err instanceof DivergedError ? 'diverged' : 'invalid';
    record.message = err.message;
    log(`  ${record.status}: ${err.message}`);
  }
  record.seconds = (performance.now() - t0) / 1000;
  writeFileAtomic(join(run, 'status.json'), `${JSON.stringify(record, null, 2)}\n`);
  return record;
}

/** A sweep's sweep.json: the arch, the shared flags and every trial's record. */
export function writeSweepManifest(dir: string, m: SweepManifest): void {
  writeFileAtomic(join(dir, 'sweep.json'), `${JSON.stringify(m, null, 2)}\n`);
}

/**
 * Runs each trial as a normal run folder under `dir` (prepareTrials, then runTrial one after
 * the other), keeping sweep.json up to date. A diverged trial is recorded and the sweep goes on.
 */
export async function runSweep(o: SweepOptions): Promise<SweepManifest> {
  const log = o.log ?? ((l: string) => console.log(l));
  const manifestPath = join(o.dir, 'sweep.json');
  const previous = existsSync(manifestPath) ? readSweepManifest(manifestPath) : undefined;
  const records = new Map<string, TrialRecord>((previous?.trials ?? []).map((t) => [t.id, withValidation(t)]));
  const prepared = await prepareTrials(o);
  const manifest = () => ({ arch: o.arch, base: o.base, trials: [...records.values()] });
  const at = o.position ?? { index: 0, total: o.trials.length };
  for (const [k, p] of prepared.entries()) {
    const record = await runTrial(p, o, `[${at.index + k + 1}/${at.total}] ${p.trial.id}`, log);
    if (!record) break;
    records.set(p.trial.id, record);
    writeSweepManifest(o.dir, manifest());
  }
  writeSweepManifest(o.dir, manifest());
  return manifest();
}

/**
 * Seed 004's questions as sweep groups on jhu-net, Fashion-MNIST. The epoch question doubles
 * the base epochs; the rest vary one thing each, everything else at the recipe's values.
 */
export function jhuQuestions(baseEpochs: number): Trial[] {
  const groups: [string, Record<string, string>[]][] = [
    ['Q2 epochs', [{ epochs: String(baseEpochs) }, { epochs: String(2 * baseEpochs) }]],
    ['Q3 SGD lr', [{ lr: '0.001' }, { lr: '0.01' }, { lr: '0.1' }]],
    ['Q4 optimiser', [{ opt: 'sgd' }, { opt: 'adam' }, { opt: 'rmsprop' }]],
    ['Q5 dropout', ['0', '0.25', '0.5', '0.9', '1'].map((p) => ({ dropout: p }))],
    ['Q6 batch', ['32', '256', '2048'].map((b) => ({ batch: b }))],
    ['Q7 width', ['0.5', '1', '2'].map((w) => ({ width: w }))],
    ['Q8-10 BatchNorm and Dropout', ['none', 'bn', 'bn-dropout', 'dropout-bn'].map((bn) => ({ bn }))],
    ['Q11 extra conv', [{ extraConv: 'false' }, { extraConv: 'true' }]],
    ['Q12 without fc2', [{ fc2: 'true' }, { fc2: 'false' }]],
  ];
  return groups.flatMap(([group, list]) => list.map((settings) => ({ id: trialId(group, settings), group, settings })));
}

export interface SearchOptions {
  arch: string;
  base: TrainFlags;
  space: Space;
  trials: number;
  algo: 'tpe' | 'random';
  seed: number;
  dir: string;
  fit: Pick<FitOptions, 'progress' | 'log' | 'stop'>;
  log?: (line: string) => void;
  force?: boolean;
  model?: string;
  archFile?: string;
}

/** A search's n-th trial at a point: `003-lr=0.01,width=2`, in the group `search (tpe)`. */
export const searchTrial = (n: number, point: Record<string, string>, algo: SearchOptions['algo']): Trial => ({ id: `${String(n).padStart(3, '0')}-${trialId('grid', point)}`, group: `search (${algo})`, settings: point });

/**
 * Hyperparameter search: each trial a normal run folder, suggested by TPE (or at random) from
 * the trials before it. Suggestions depend only on the seed and the earlier results, so a
 * re-run replays the finished trials and continues where it stopped.
 */
export async function runSearch(o: SearchOptions): Promise<SweepManifest> {
  const rng = Rng.seeded(o.seed);
  const history: Observation[] = [];
  let manifest: SweepManifest = { arch: o.arch, base: o.base, trials: [] };
  for (let i = 0; i < o.trials; i++) {
    const point = suggestNew(o.space, history, rng, o.algo);
    const trial = searchTrial(i + 1, point, o.algo);
    manifest = await runSweep({ ...o, trials: [trial], log: o.log, position: { index: i, total: o.trials } });
    if (o.fit.stop?.requested) break;
    const record = manifest.trials.find((t) => t.id === trial.id)!;
    history.push({ point, loss: record.status === 'done' ? 1 - trialScore(record) : 1 });
  }
  return manifest;
}
