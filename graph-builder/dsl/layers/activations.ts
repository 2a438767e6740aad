import { attr } from '../../graph/ir.ts';
import type { LayerKind } from './kind.ts';

export interface Relu {
  kind: 'relu';
}

export interface LogSoftmax {
  kind: 'logSoftmax';
}

export function relu(): Relu {
  return { kind: 'relu' };
}

export function logSoftmax(): LogSoftmax {
  return { kind: 'logSoftmax' };
}

export const reluLayer: LayerKind<Relu> = {
  kind: 'relu',
  prefix: 'relu',
  summaryType: 'ReLU',
  fromJson: () => relu(),
  describe: () => 'relu()',
  check: () => {},
  infer: (_l, ctx) => ({ out: ctx.shape, params: [] }),
  emit: (_l, { b, x, name }) => b.op('Relu', [x], {}, name),
};

/** Log-probabilities over the classes: a model ending here is trained with NLL (as the EVA and JHU seeds). */
export const logSoftmaxLayer: LayerKind<LogSoftmax> = {
  kind: 'logSoftmax',
  prefix: 'logsoftmax',
  summaryType: 'LogSoftmax',
  fromJson: () => logSoftmax(),
  describe: () => 'logSoftmax()',
  check: () => {},
  infer: (_l, ctx) => ({ out: ctx.shape, params: [] }),
  emit: (_l, { b, x, name }) => b.op('LogSoftmax', [x], { axis: attr.int(1) }, name),
};
