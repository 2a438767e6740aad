import { SGD } from '../../graph-builder/optimizers.ts';
import type { OptimizerEntry } from './index.ts';

// The kind is graph-builder's built-in one: the demo page's head steps (inference/) train with it.
export const sgd: OptimizerEntry = { kind: SGD, title: 'SGD', lr: 0.01, flags: ['momentum', 'nesterov'] };
