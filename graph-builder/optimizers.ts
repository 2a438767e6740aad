import { attr, type GraphBuilder } from './graph/ir.ts';
import type { OptimizerName } from './dsl/presets.ts';

export interface OptimizerConfig {
  name: OptimizerName;
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
export function defaultOptimizer(name: OptimizerName, weightDecay = 0, momentumBuffer = false, nesterov = false): OptimizerConfig {
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

/** The state tensors (PyTorch's names) each parameter carries. */
export function stateNames(opt: OptimizerConfig): string[] {
  switch (opt.name) {
    case 'sgd':
      return opt.momentum ? ['momentum_buffer'] : [];
    case 'adam':
    case 'adamw':
      return ['exp_avg', 'exp_avg_sq'];
    case 'rmsprop':
      return opt.momentum ? ['square_avg', 'momentum_buffer'] : ['square_avg'];
  }
}

export interface UpdateInputs {
  param: string;
  grad: string;
  state: Record<string, string>;
  /** Per-step scalars: learning rate; momentum (SGD, RMSprop) or beta1 (Adam, AdamW). */
  lr: string;
  momentum: string;
  /** 1-based step number as float32 (for bias correction). */
  t: string;
}

export interface UpdateOutputs {
  param: string;
  state: Record<string, string>;
}

/** Emits one parameter's update with PyTorch's formulas (torch.optim, foreach=False semantics). */
export function emitUpdate(b: GraphBuilder, opt: OptimizerConfig, u: UpdateInputs): UpdateOutputs {
  const c = (v: number) => b.scalar(v);
  const op = (name: string, ...inputs: string[]) => b.op(name, inputs, {}, `${u.param.replace(/\W/g, '_')}_upd`);
  const decayed = (g: string) => (opt.weightDecay ? op('Add', g, op('Mul', u.param, c(opt.weightDecay))) : g);
  switch (opt.name) {
    case 'sgd': {
      let d = decayed(u.grad);
      const state: Record<string, string> = {};
      if (opt.momentum) {
        // buf = momentum * buf + d (dampening 0); a zero buffer makes the first step buf = d, as PyTorch.
        const buf = op('Add', op('Mul', u.state.momentum_buffer, u.momentum), d);
        state.momentum_buffer = buf;
        d = opt.nesterov ? op('Add', d, op('Mul', buf, u.momentum)) : buf;
      }
      return { param: op('Sub', u.param, op('Mul', d, u.lr)), state };
    }
    case 'adam':
    case 'adamw': {
      let p = u.param;
      let g = u.grad;
      if (opt.name === 'adamw') {
        if (opt.weightDecay) p = op('Mul', p, op('Sub', c(1), op('Mul', u.lr, c(opt.weightDecay))));
      } else {
        g = decayed(g);
      }
      const beta1 = u.momentum;
      const m = op('Add', op('Mul', u.state.exp_avg, beta1), op('Mul', g, op('Sub', c(1), beta1)));
      const v = op('Add', op('Mul', u.state.exp_avg_sq, c(opt.beta2)), op('Mul', op('Mul', g, g), c(1 - opt.beta2)));
      const bc1 = op('Sub', c(1), op('Pow', beta1, u.t));
      const bc2 = op('Sub', c(1), op('Pow', c(opt.beta2), u.t));
      const denom = op('Add', op('Div', op('Sqrt', v), op('Sqrt', bc2)), c(opt.eps));
      const stepSize = op('Div', u.lr, bc1);
      return { param: op('Sub', p, op('Mul', op('Div', m, denom), stepSize)), state: { exp_avg: m, exp_avg_sq: v } };
    }
    case 'rmsprop': {
      const g = decayed(u.grad);
      const sq = op('Add', op('Mul', u.state.square_avg, c(opt.alpha)), op('Mul', op('Mul', g, g), c(1 - opt.alpha)));
      const avg = op('Add', op('Sqrt', sq), c(opt.eps));
      const state: Record<string, string> = { square_avg: sq };
      let d = op('Div', g, avg);
      if (opt.momentum) {
        const buf = op('Add', op('Mul', u.state.momentum_buffer, u.momentum), d);
        state.momentum_buffer = buf;
        d = buf;
      }
      return { param: op('Sub', u.param, op('Mul', d, u.lr)), state };
    }
  }
}

/** t = step + 1 as float32, from the int64 step counter. */
export function emitStepNumber(b: GraphBuilder, step: string): string {
  return b.op('Add', [b.cast(step, 'float32', 'step_f'), b.scalar(1)], {}, 't');
}
