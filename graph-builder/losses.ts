import { attr, type GraphBuilder } from './graph/ir.ts';

export type LossKind = 'cross-entropy' | 'nll';

export interface LossOptions {
  /** 'nll' when the model already ends in LogSoftmax, 'cross-entropy' on raw logits. */
  kind: LossKind;
  /**
   * Label smoothing epsilon, as PyTorch's CrossEntropyLoss; for 'nll' the same target applied to
   * the model's log-probabilities (the loss cross-entropy with smoothing gives on its logits).
   */
  smoothing?: number;
  /** 'mean' over the batch for training, 'sum' for evaluation. */
  reduction: 'mean' | 'sum';
  classes?: number;
}

export interface LossValues {
  loss: string;
  /** How many argmax predictions equal the labels (float scalar). */
  correct: string;
  /** Argmax class per example (int64 [B]). */
  predicted: string;
}

/**
 * -sum_k q_k log p_k per example, q the one-hot label (smoothed: (1 - e) onehot + e / K),
 * log p the log-softmax of the scores: PyTorch's cross_entropy and nll_loss.
 */
export function emitLoss(b: GraphBuilder, scores: string, labels: string, opts: LossOptions): LossValues {
  const K = opts.classes ?? 10;
  const eps = opts.smoothing ?? 0;
  const logp = opts.kind === 'nll' ? scores : b.op('LogSoftmax', [scores], { axis: attr.int(1) }, 'log_probabilities');
  b.note(logp, 'float32', b.shapes.get(scores));
  let target = b.op('OneHot', [labels, b.constI([K], []), b.constF([0, 1])], { axis: attr.int(-1) }, 'onehot');
  b.note(target, 'float32', b.shapes.get(scores));
  if (eps) target = b.op('Add', [b.op('Mul', [target, b.scalar(1 - eps)]), b.scalar(eps / K)], {}, 'smoothed_target');
  const perExample = b.op('ReduceSum', [b.op('Mul', [target, logp], {}, 'target_logp'), b.constI([1])], { keepdims: attr.int(0) }, 'example_logp');
  const reduced = b.op(opts.reduction === 'mean' ? 'ReduceMean' : 'ReduceSum', [perExample], { keepdims: attr.int(0) }, 'batch_logp');
  const loss = b.op('Neg', [reduced], {}, 'loss');
  b.note(loss, 'float32', []);
  const predicted = b.op('ArgMax', [scores], { axis: attr.int(1), keepdims: attr.int(0) }, 'predicted');
  const hits = b.cast(b.op('Equal', [predicted, labels]), 'float32', 'hits');
  const correct = b.op('ReduceSum', [hits], { keepdims: attr.int(0) }, 'correct');
  return { loss, correct, predicted };
}
