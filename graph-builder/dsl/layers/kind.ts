import type { AttrValue, GraphBuilder } from '../../graph/ir.ts';
import type { ParamSpec, Shape } from '../../model.ts';

/** Reads a JSON layer's fields, with the DSL's defaults; a missing or mistyped field is a one-line error. */
export interface JsonFields {
  num(key: string, fallback?: number): number;
  bool(key: string, fallback: boolean): boolean;
}

/** What a layer's shape rule sees: its input shape, its name and how to fail with the layer named. */
export interface ShapeContext {
  shape: Shape;
  /** conv1, fc2, ...: the prefix of its parameters' names. */
  name: string;
  fail(what: string): never;
  /** The input as CxHxW, or a failure saying the layer needs a feature map. */
  maps(): [number, number, number];
  /** The layer before this one, if any. */
  prev?: { kind: string; inShape: Shape };
}

/** What a layer's emission sees: the forward graph's builder, its input value, its name. */
export interface EmitContext {
  b: GraphBuilder;
  x: string;
  name: string;
  /** 1-based position in the model (dropout masks are salted with it). */
  index: number;
  /** Declares the dropout site of a Dropout node this layer emitted. */
  dropoutSite(node: string, p: number): void;
}

/**
 * One kind of DSL layer, all in one module: its JSON form, how it reads in messages, its
 * settings check, its shape rule and parameters, its summary label and its ONNX emission.
 */
export interface LayerKind<L extends { kind: string }> {
  kind: L['kind'];
  /** Parameter-name prefix: conv -> conv1.weight. */
  prefix: string;
  /** The summary's type column (torchsummary's names). */
  summaryType: string;
  fromJson(f: JsonFields): L;
  describe(l: L): string;
  /** Problems with the layer's own settings, before shapes; `bad` throws. */
  check(l: L, bad: (what: string) => never): void;
  infer(l: L, ctx: ShapeContext): { out: Shape; params: ParamSpec[] };
  /** Emits the layer's forward nodes (eval form) and returns its output value. */
  emit(l: L, ctx: EmitContext): string;
  /** The layer with `n` outputs (features or channels), for kinds that can be a model's head. */
  withOutputs?(l: L, n: number): L;
}

export const positiveInt = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 1;

export const shapeText = (s: Shape): string => s.join('x');

/** PyTorch's default for conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases. */
export function fanInParam(name: string, shape: number[], role: 'weight' | 'bias', fanIn: number): ParamSpec {
  return { name, shape, role, trainable: true, init: { kind: 'uniform', bound: 1 / Math.sqrt(fanIn) } };
}

/** Output size of a window sliding over `n` with padding on both sides. */
export const windowOut = (n: number, kernel: number, stride: number, padding = 0) => Math.floor((n + 2 * padding - kernel) / stride) + 1;

/** A parameter-free layer that is one ONNX op (ReLU, Flatten, ...): its names, op, attributes and shape rule. */
export function opLayer<L extends { kind: string }>(o: {
  kind: L['kind'];
  prefix: string;
  summaryType: string;
  op: string;
  make: () => L;
  attrs?: Record<string, AttrValue>;
  /** The output shape (default: the input's). */
  out?: (ctx: ShapeContext) => Shape;
}): LayerKind<L> {
  return {
    kind: o.kind,
    prefix: o.prefix,
    summaryType: o.summaryType,
    fromJson: () => o.make(),
    describe: () => `${o.kind}()`,
    check: () => {},
    infer: (_l, ctx) => ({ out: o.out ? o.out(ctx) : ctx.shape, params: [] }),
    emit: (_l, { b, x, name }) => b.op(o.op, [x], o.attrs ?? {}, name),
  };
}
