import { attr } from '../../graph/ir.ts';
import { opLayer } from './kind.ts';

export interface LogSoftmax {
  kind: 'logSoftmax';
}

export function logSoftmax(): LogSoftmax {
  return { kind: 'logSoftmax' };
}

/** Log-probabilities over the classes: a model ending here is trained with NLL (as the EVA and JHU seeds). */
export const logSoftmaxLayer = opLayer<LogSoftmax>({ kind: 'logSoftmax', prefix: 'logsoftmax', summaryType: 'LogSoftmax', op: 'LogSoftmax', make: logSoftmax, attrs: { axis: attr.int(1) } });
