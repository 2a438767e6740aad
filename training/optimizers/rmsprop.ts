import type { OptimizerKind } from '../../graph-builder/optimizers.ts';
import type { OptimizerEntry } from './index.ts';

/** RMSprop with optional momentum (centered off), as torch.optim.RMSprop. */
const RMSPROP: OptimizerKind = {
  name: 'rmsprop',
  momentumInput: 'momentum',
  slots: (opt) => (opt.momentum ? ['square_avg', 'momentum_buffer'] : ['square_avg']),
  emit({ c, op, decayed }, opt, u) {
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
  },
};

export const rmsprop: OptimizerEntry = { kind: RMSPROP, title: 'RMSprop', lr: 0.01, flags: ['momentum'] };
