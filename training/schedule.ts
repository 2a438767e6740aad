import type { Recipe, ScheduleName } from '../graph-builder/dsl/presets.ts';
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

/** cos annealing from a to b as t goes 0..1 (PyTorch's _annealing_cos). */
function cosAnneal(a: number, b: number, t: number): number {
  return b + ((a - b) / 2) * (1 + Math.cos(Math.PI * t));
}

/**
 * Learning rate and momentum of global step `step` (0-based), as PyTorch's schedulers give
 * them: StepLR and CosineAnnealingLR stepped per epoch / per step, OneCycleLR (two phases,
 * cosine, momentum cycled inversely between the range's ends) stepped per step.
 */
export function hyperAt(s: ScheduleSettings, step: number): StepHyper {
  switch (s.name) {
    case 'constant':
      return { lr: s.lr, momentum: s.momentum };
    case 'step': {
      const epoch = Math.floor(step / s.stepsPerEpoch);
      return { lr: s.lr * s.gamma ** Math.floor(epoch / s.stepEpochs), momentum: s.momentum };
    }
    case 'cosine':
      return { lr: cosAnneal(s.lr, 0, Math.min(1, step / Math.max(1, s.totalSteps))), momentum: s.momentum };
    case 'onecycle': {
      const o = s.onecycle;
      const initial = s.lr / o.divFactor;
      const min = initial / o.finalDivFactor;
      const [low, high] = o.momentumRange;
      const warmEnd = o.pctStart * s.totalSteps - 1;
      const end = s.totalSteps - 1;
      if (step <= warmEnd) {
        const t = warmEnd > 0 ? step / warmEnd : 1;
        return { lr: cosAnneal(initial, s.lr, t), momentum: cosAnneal(high, low, t) };
      }
      const t = end > warmEnd ? Math.min(1, (step - warmEnd) / (end - warmEnd)) : 1;
      return { lr: cosAnneal(s.lr, min, t), momentum: cosAnneal(low, high, t) };
    }
  }
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
