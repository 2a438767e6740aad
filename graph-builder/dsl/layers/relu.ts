import { opLayer } from './kind.ts';

export interface Relu {
  kind: 'relu';
}

export function relu(): Relu {
  return { kind: 'relu' };
}

export const reluLayer = opLayer<Relu>({ kind: 'relu', prefix: 'relu', summaryType: 'ReLU', op: 'Relu', make: relu });
