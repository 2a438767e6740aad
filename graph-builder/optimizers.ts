import type { GraphBuilder } from './graph/ir.ts';

/**
 * An optimiser's settings that shape the train step (saved as they are in config.json,
 * manifest.json and the model card); the name is a kind's: training/optimizers' table lists them.
 */
export interface OptimizerConfig {
  name: string;
  weightDecay: number;
  /** SGD and RMSprop: whether a momentum buffer exists (momentum > 0 at some step). */
  momentum: boolean;
  nesterov: boolean;
  /** Adam/AdamW second-moment decay; the first (beta1) is a per-step input. */
  beta2: number;
  eps: number;
  /** RMSprop smoothing constant. */
  alpha: number;
}

/** PyTorch's defaults for each optimiser; `momentumBuffer` where some step has momentum > 0. */
export function defaultOptimizer(name: string, weightDecay = 0, momentumBuffer = false, nesterov = false): OptimizerConfig {
  return {
    name,
    weightDecay,
    momentum: momentumBuffer,
    nesterov,
    beta2: 0.999,
    eps: 1e-8,
    alpha: 0.99,
  };
}

export interface UpdateInputs {
  param: string;
  grad: string;
  state: Record<string, string>;
  /** Per-step scalars: learning rate; momentum or beta1, as the kind's `momentumInput` says. */
  lr: string;
  momentum: string;
  /** 1-based step number as float32 (for bias correction). */
  t: string;
}

export interface UpdateOutputs {
  param: string;
  state: Record<string, string>;
}

/** What an update is emitted with: a scalar constant, an op named after the parameter, and the L2-decayed gradient. */
export interface UpdateOps {
  c: (v: number) => string;
  op: (name: string, ...inputs: string[]) => string;
  decayed: (g: string) => string;
}

/**
 * What an optimiser is to the train step: the state each parameter carries and the update's
 * ops. The kinds live in training/optimizers (SGD here too: the demo page's head steps use it).
 */
export interface OptimizerKind {
  name: string;
  /** What the per-step `momentum` input is to it: a momentum factor (buffered where `OptimizerConfig.momentum`), or Adam's beta1. */
  momentumInput: 'momentum' | 'beta1';
  /** The state tensors (PyTorch's names) each parameter carries. */
  slots(opt: OptimizerConfig): string[];
  /** One parameter's update with PyTorch's formulas (torch.optim, foreach=False semantics). */
  emit(ops: UpdateOps, opt: OptimizerConfig, u: UpdateInputs): UpdateOutputs;
}

/** SGD with optional momentum (dampening 0) and Nesterov, as torch.optim.SGD. */
export const SGD: OptimizerKind = {
  name: 'sgd',
  momentumInput: 'momentum',
  slots: (opt) => (opt.momentum ? ['momentum_buffer'] : []),
  emit({ op, decayed }, opt, u) {
    let d = decayed(u.grad);
    const state: Record<string, string> = {};
    if (opt.momentum) {
      // buf = momentum * buf + d (dampening 0); a zero buffer makes the first step buf = d, as PyTorch.
      const buf = op('Add', op('Mul', u.state.momentum_buffer, u.momentum), d);
      state.momentum_buffer = buf;
      d = opt.nesterov ? op('Add', d, op('Mul', buf, u.momentum)) : buf;
    }
    return { param: op('Sub', u.param, op('Mul', d, u.lr)), state };
  },
};

/**
 * The kind that emits a config's update: the one given (training resolves it from the name),
 * else the built-in SGD; a config naming another optimiser without its kind is a programming error.
 */
export function optimizerKindOf(opt: OptimizerConfig, kind?: OptimizerKind): OptimizerKind {
  const k = kind ?? SGD;
  if (k.name !== opt.name) throw new Error(`train step: optimizer '${opt.name}' needs its kind (training/optimizers resolves it by name), got ${kind ? `'${k.name}'` : 'none'}`);
  return k;
}

/** The state tensors (PyTorch's names) each parameter carries. */
export function stateNames(opt: OptimizerConfig, kind?: OptimizerKind): string[] {
  return optimizerKindOf(opt, kind).slots(opt);
}

/** Emits one parameter's update with its kind's formulas. */
export function emitUpdate(b: GraphBuilder, opt: OptimizerConfig, u: UpdateInputs, kind?: OptimizerKind): UpdateOutputs {
  const c = (v: number) => b.scalar(v);
  const op = (name: string, ...inputs: string[]) => b.op(name, inputs, {}, `${u.param.replace(/\W/g, '_')}_upd`);
  const decayed = (g: string) => (opt.weightDecay ? op('Add', g, op('Mul', u.param, c(opt.weightDecay))) : g);
  return optimizerKindOf(opt, kind).emit({ c, op, decayed }, opt, u);
}

/** t = step + 1 as float32, from the int64 step counter. */
export function emitStepNumber(b: GraphBuilder, step: string): string {
  return b.op('Add', [b.cast(step, 'float32', 'step_f'), b.scalar(1)], {}, 't');
}
