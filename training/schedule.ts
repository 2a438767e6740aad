import type { Recipe } from '../graph-builder/dsl/presets.ts';
import { UsageError } from '../common/errors.ts';
import type { RunConfig } from './config.ts';

export interface ScheduleSettings {
  name: ScheduleName;
  /** Base (constant, step, cosine) or peak (onecycle) learning rate. */
  lr: number;
  /** Base momentum (SGD, RMSprop) or beta1 (Adam, AdamW). */
  momentum: number;
  totalSteps: number;
  stepsPerEpoch: number;
  /** StepLR: multiply by gamma every stepEpochs epochs. */
  stepEpochs: number;
  gamma: number;
  onecycle: NonNullable<Recipe['onecycle']>;
}

export interface StepHyper {
  lr: number;
  momentum: number;
}

/** The training flags (flags.ts) that tune a schedule. */
export type ScheduleFlag = 'step-epochs' | 'gamma';

/** One learning-rate schedule: its curve, the flags that tune it and what it needs of the rest of the run. */
export interface ScheduleEntry {
  /** Learning rate and momentum of global step `step` (0-based), as PyTorch's scheduler gives them. */
  at(s: ScheduleSettings, step: number): StepHyper;
  /** The schedule flags that tune it. */
  flags: readonly ScheduleFlag[];
  /** It varies the per-step momentum input, so an optimiser with a momentum buffer needs it even at base momentum 0. */
  cyclesMomentum: boolean;
  /** Its curve is laid over the run's length (changing --epochs of a run reshapes it). */
  spansRun(cfg: Pick<RunConfig, 'flags'>): boolean;
}

/** cos annealing from a to b as t goes 0..1 (PyTorch's _annealing_cos). */
function cosAnneal(a: number, b: number, t: number): number {
  return b + ((a - b) / 2) * (1 + Math.cos(Math.PI * t));
}

const constant: ScheduleEntry = { at: (s) => ({ lr: s.lr, momentum: s.momentum }), flags: [], cyclesMomentum: false, spansRun: () => false };

/** StepLR, stepped per epoch; its default step (epochs/3) follows the run's length. */
const step: ScheduleEntry = {
  at(s, n) {
    const epoch = Math.floor(n / s.stepsPerEpoch);
    return { lr: s.lr * s.gamma ** Math.floor(epoch / s.stepEpochs), momentum: s.momentum };
  },
  flags: ['step-epochs', 'gamma'],
  cyclesMomentum: false,
  spansRun: (cfg) => cfg.flags['step-epochs'] === undefined,
};

/** CosineAnnealingLR to 0 over the run, stepped per step. */
const cosine: ScheduleEntry = {
  at: (s, n) => ({ lr: cosAnneal(s.lr, 0, Math.min(1, n / Math.max(1, s.totalSteps))), momentum: s.momentum }),
  flags: [],
  cyclesMomentum: false,
  spansRun: () => true,
};

/** OneCycleLR (two phases, cosine, momentum cycled inversely between the range's ends), stepped per step. */
const onecycle: ScheduleEntry = {
  at(s, n) {
    const o = s.onecycle;
    const initial = s.lr / o.divFactor;
    const min = initial / o.finalDivFactor;
    const [low, high] = o.momentumRange;
    const warmEnd = o.pctStart * s.totalSteps - 1;
    const end = s.totalSteps - 1;
    if (n <= warmEnd) {
      const t = warmEnd > 0 ? n / warmEnd : 1;
      return { lr: cosAnneal(initial, s.lr, t), momentum: cosAnneal(high, low, t) };
    }
    const t = end > warmEnd ? Math.min(1, (n - warmEnd) / (end - warmEnd)) : 1;
    return { lr: cosAnneal(s.lr, min, t), momentum: cosAnneal(low, high, t) };
  },
  flags: [],
  cyclesMomentum: true,
  spansRun: () => true,
};

/** Every learning-rate schedule, once: --schedule's choices, a recipe's check and the run's curve derive from it. */
export const SCHEDULES = { constant, step, onecycle, cosine } as const satisfies Record<string, ScheduleEntry>;

export type ScheduleName = keyof typeof SCHEDULES;
export const SCHEDULE_NAMES = Object.keys(SCHEDULES) as ScheduleName[];

/** A schedule's name checked against the table; an unknown one is a one-line UsageError saying where it came from. */
export function scheduleName(name: string, where = '--schedule'): ScheduleName {
  if (!(name in SCHEDULES)) throw new UsageError(`${where}: expected one of ${SCHEDULE_NAMES.join(', ')}, got '${name}'`);
  return name as ScheduleName;
}

/** A schedule flag's help text, naming the schedules it tunes: `step schedule: decay factor`. */
export function scheduleFlagHelp(flag: ScheduleFlag, text: string): string {
  const tuned = SCHEDULE_NAMES.filter((n) => SCHEDULES[n].flags.includes(flag));
  return `${tuned.join(', ')} schedule${tuned.length > 1 ? 's' : ''}: ${text}`;
}

/**
 * Learning rate and momentum of global step `step` (0-based), as PyTorch's schedulers give
 * them: StepLR and CosineAnnealingLR stepped per epoch / per step, OneCycleLR stepped per step.
 */
export function hyperAt(s: ScheduleSettings, step: number): StepHyper {
  return SCHEDULES[s.name].at(s, step);
}

/** A run's schedule: its settings with the run's length in steps. */
export function scheduleOf(cfg: RunConfig, stepsPerEpoch: number): ScheduleSettings {
  return {
    name: cfg.schedule,
    lr: cfg.lr,
    momentum: cfg.momentum,
    totalSteps: stepsPerEpoch * cfg.epochs,
    stepsPerEpoch,
    stepEpochs: cfg.stepEpochs,
    gamma: cfg.gamma,
    onecycle: cfg.onecycle,
  };
}
