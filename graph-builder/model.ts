/**
 * The model every stage after a front-end works on: an ONNX forward graph from one image input
 * to class scores, plus its parameter list. The DSL (dsl/to-model.ts) is one front-end that
 * produces it; artifacts, summaries and FLOP counts read only this.
 */
import type { Dim, Graph, Node } from './graph/ir.ts';

/** A per-example shape: [C, H, W] for feature maps, [F] for features. The batch is implicit. */
export type Shape = number[];

export type ParamRole = 'weight' | 'bias' | 'running_mean' | 'running_var';

/** How a parameter starts: PyTorch's default U(-bound, bound) for weights and biases, or a constant. */
export type ParamInit = { kind: 'uniform'; bound: number } | { kind: 'constant'; value: number } | { kind: 'given'; data: Float32Array };

export interface ParamSpec {
  /** PyTorch-style name, e.g. `conv1.weight`, `bn2.running_var`. */
  name: string;
  shape: number[];
  role: ParamRole;
  /** Running statistics are state, not parameters: they are not trained and not counted. */
  trainable: boolean;
  init: ParamInit;
}

/** A user-level layer: the forward nodes it emitted, how the summary names it, its output. */
export interface LayerGroup {
  /** 1-based position, as error messages and the summary give it. */
  index: number;
  /** conv1, pool1, fc2, ...: the prefix of its parameters' names. */
  name: string;
  /** The summary's type column, e.g. `Conv2d`. */
  type: string;
  nodes: Node[];
  output: string;
}

/** A Dropout node's drop probability and the salt that keeps its masks apart from other layers'. */
export interface DropoutSite {
  p: number;
  salt: number;
}

export interface Model {
  /** Preset id (`partB`, `jhu-net:width=2`) or `file:<name>`. */
  id: string;
  /**
   * Standard ONNX ops in eval form (Dropout, inference-mode BatchNormalization, single-output
   * MaxPool); inputs are the image and the parameters (by their names), the output the scores.
   */
  graph: Graph;
  input: string;
  /** Per-example input shape, e.g. [1, 28, 28]. */
  inputShape: Shape;
  /**
   * What the input holds: images (absent: the train and eval graphs take uint8 pixels and
   * normalise inside), or 'features', float32 values another graph computed (a head cut off by
   * split.ts: no conversion, no normalisation).
   */
  inputKind?: 'image' | 'features';
  output: string;
  /** What the output holds; decides the loss (cross-entropy on logits, NLL on log-probabilities). */
  outputKind: 'logits' | 'log-probabilities';
  classes: number;
  params: ParamSpec[];
  trainableCount: number;
  /** Static shapes of the graph's values, batch axis 'N'. */
  shapes: Map<string, Dim[]>;
  layers: LayerGroup[];
  /** Dropout sites by node name. */
  dropouts: Map<string, DropoutSite>;
  /** Where an imported model came from: its file and bytes (its trained form keeps their interface). */
  source?: ImportedSource;
}

/** Where an imported model came from and how its trained form is written back. */
export interface ImportedSource {
  file: string;
  /** The model with its weights inside (external data inlined). */
  bytes: Uint8Array;
  metadata: Record<string, string>;
  outputKind: OutputKind;
  output: string;
  /** Where its weights were: the trained model is written the same way (external: a `.data` file beside it). */
  layout?: 'inline' | 'external';
  /** Its input is [N, H, W, C]; cnnlab's graphs feed [N, C, H, W] and transpose inside. */
  channelsLast?: boolean;
  /** A replaced head: the new class count and the new shapes of the head's tensors. */
  head?: { classes: number; dims: Record<string, number[]> };
}

/** The value a white pixel (255) has at the model's input: 1 (pixels 0..1) or 255 (raw 0..255). */
export type InputRange = 1 | 255;

/** (x - mean) / std at the model's input: one mean and std for every channel, or one per channel (in the input's channel order). */
export interface Normalization {
  mean: number | number[];
  std: number | number[];
}

/** What is wrong with a normalisation for a model of `channels` input channels (a list of values per channel of another length), or undefined. */
export function normalizationMismatch(n: Normalization, channels: number): string | undefined {
  const wrong = [n.mean, n.std].find((v) => Array.isArray(v) && v.length !== channels) as number[] | undefined;
  if (!wrong) return undefined;
  return `${wrong.length} values per channel for a ${channels}-channel model; give ${channels === 1 ? 'MEAN,STD' : `${channels} means and ${channels} stds (M1,M2,M3/S1,S2,S3)`}`;
}

/** What a classifier's output holds. */
export type OutputKind = 'logits' | 'probabilities' | 'log-probabilities';

export const elementCount = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** One example's uint8 layout in the train and eval graphs: [H, W] for grey (MNIST's IDX form), else [C, H, W]; a features input's own shape. */
export function byteImageDims(model: Pick<Model, 'inputShape' | 'inputKind'>): number[] {
  if (model.inputKind === 'features') return [...model.inputShape];
  const [c, ...hw] = model.inputShape;
  return c === 1 ? hw : [...model.inputShape];
}

/** The nodes of the forward graph that read parameter `name`. */
export function paramsRead(model: Model, nodes: readonly Node[]): ParamSpec[] {
  const names = new Set(nodes.flatMap((n) => n.inputs));
  return model.params.filter((p) => names.has(p.name));
}

/** The feature extractor: every parameter read before the first fully connected node (Gemm or MatMul). */
export function featureParams(model: Model): Set<string> {
  const out = new Set<string>();
  for (const node of model.graph.nodes) {
    if (node.op === 'Gemm' || node.op === 'MatMul') break;
    for (const p of paramsRead(model, [node])) out.add(p.name);
  }
  return out;
}
