import type { OptimizerKind } from '../../graph-builder/optimizers.ts';
import type { OptimizerEntry } from './index.ts';

/** Adam (weight decay as L2 on the gradient) and AdamW (decoupled), as torch.optim.Adam/AdamW with amsgrad off. */
function adamKind(name: 'adam' | 'adamw'): OptimizerKind {
  return {
    name,
    momentumInput: 'beta1',
    slots: () => ['exp_avg', 'exp_avg_sq'],
    emit({ c, op, decayed }, opt, u) {
      let p = u.param;
      let g = u.grad;
      if (name === 'adamw') {
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
    },
  };
}

export const adam: OptimizerEntry = { kind: adamKind('adam'), title: 'Adam', lr: 1e-3, beta1: 0.9, flags: [] };
export const adamw: OptimizerEntry = { kind: adamKind('adamw'), title: 'AdamW', lr: 1e-3, beta1: 0.9, flags: [], decoupledDecay: true };
