import { UsageError } from '../../common/errors.ts';
import { lossKindFor, type TrainSpec } from '../../graph-builder/artifacts/build.ts';
import type { Architecture } from '../../graph-builder/dsl/arch.ts';
import { defaultOptimizer, type OptimizerConfig, type OptimizerKind } from '../../graph-builder/optimizers.ts';
import { adam, adamw } from './adam.ts';
import { rmsprop } from './rmsprop.ts';
import { sgd } from './sgd.ts';
import { SCHEDULES, scheduleName } from '../schedule.ts';

/** The optimiser flags (besides --lr and --weight-decay, which every one takes) an optimiser may take. */
export type OptimizerFlag = 'momentum' | 'nesterov';

/** One optimiser: its train-step kind, PyTorch's defaults and the flags that apply to it. */
export interface OptimizerEntry {
  kind: OptimizerKind;
  /** As help texts name it: 'SGD'. */
  title: string;
  /** PyTorch's default learning rate, for a run that replaces the preset's optimiser with it. */
  lr: number;
  /** A kind whose per-step momentum input is beta1: its default. */
  beta1?: number;
  /** The flags that apply; --momentum is beta1 for a beta1 kind. */
  flags: readonly OptimizerFlag[];
  /** Weight decay is decoupled from the gradient (AdamW), not L2 added to it. */
  decoupledDecay?: boolean;
}

/** Every optimiser, once: --opt's choices, config.ts's defaults and validation, the help texts and the train step's kind derive from it. */
export const OPTIMIZERS = { sgd, adam, adamw, rmsprop } as const satisfies Record<string, OptimizerEntry>;

export type OptimizerName = keyof typeof OPTIMIZERS;
export const OPTIMIZER_NAMES = Object.keys(OPTIMIZERS) as OptimizerName[];
const ENTRIES: readonly OptimizerEntry[] = Object.values(OPTIMIZERS);

/** An optimiser's entry by name; an unknown name is a one-line UsageError saying where it came from. */
export function optimizerEntry(name: string, where = '--opt'): OptimizerEntry {
  const entry = (OPTIMIZERS as Record<string, OptimizerEntry>)[name];
  if (!entry) throw new UsageError(`${where}: expected one of ${OPTIMIZER_NAMES.join(', ')}, got '${name}'`);
  return entry;
}

/** The kind that emits a config's updates, resolved from its name (train steps are compiled with it). */
export function optimizerKind(opt: OptimizerConfig): OptimizerKind {
  return optimizerEntry(opt.name, 'optimizer').kind;
}

/** What compile and buildTrainStepModel take of an optimiser: its settings and, resolved from its name, its kind. */
export function resolvedOptimizer(opt: OptimizerConfig): { optimizer: OptimizerConfig; optimizerKind: OptimizerKind } {
  return { optimizer: opt, optimizerKind: optimizerKind(opt) };
}

/** The titles of the optimisers matching `pred`, as a help text lists them: `SGD, RMSprop`. */
function titles(pred: (e: OptimizerEntry) => boolean): string {
  return ENTRIES.filter(pred)
    .map((e) => e.title)
    .join(', ');
}

/** The help texts of the optimiser flags, from the table. */
export const OPTIMIZER_HELP = {
  momentum: `momentum (${titles((e) => e.kind.momentumInput === 'momentum')}) or beta1 (${titles((e) => e.kind.momentumInput === 'beta1')})`,
  weightDecay: `L2 weight decay (decoupled for ${titles((e) => e.decoupledDecay === true)})`,
  nesterov: `Nesterov momentum (${titles((e) => e.flags.includes('nesterov'))})`,
};

export interface TrainSpecOverrides {
  opt?: OptimizerName;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
  smoothing?: number;
}

/**
 * What shapes an architecture's training graphs: its recipe's optimiser (or another one, with
 * PyTorch's defaults where the recipe's values were for its own), loss and label smoothing.
 */
export function trainSpecFor(arch: Architecture, o: TrainSpecOverrides = {}): TrainSpec {
  const r = arch.recipe;
  const name = o.opt ?? r.optimizer;
  const entry = optimizerEntry(name, o.opt ? '--opt' : `${arch.id}: recipe optimizer`);
  if (o.nesterov && !entry.flags.includes('nesterov')) throw new UsageError(`--nesterov: applies to ${titles((e) => e.flags.includes('nesterov'))}, not ${entry.title}`);
  // A schedule that cycles momentum needs the buffer even where the base momentum is 0.
  const momentum = o.momentum ?? (name === r.optimizer ? r.momentum : 0);
  const cycles = SCHEDULES[scheduleName(r.schedule, `${arch.id}: recipe schedule`)].cyclesMomentum && entry.kind.momentumInput === 'momentum';
  const optimizer = defaultOptimizer(name, o.weightDecay ?? (name === r.optimizer ? r.weightDecay : 0), momentum > 0 || cycles, o.nesterov ?? false);
  if (optimizer.nesterov && !(momentum > 0)) throw new UsageError('--nesterov: needs --momentum > 0');
  return { optimizer, loss: lossKindFor(arch), smoothing: o.smoothing ?? r.labelSmoothing ?? 0 };
}
