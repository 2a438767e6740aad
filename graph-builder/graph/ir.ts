/**
 * The graph representation every stage shares: named values, ops with attributes, nodes in
 * topological order (a node only reads values defined before it). Autodiff walks it backwards;
 * onnx.ts serialises it.
 */
import { DTYPE_CODE } from './onnx.ts';

export type DType = 'float32' | 'int64' | 'int32' | 'uint32' | 'uint8' | 'bool';
/** A static size, or a symbolic one such as 'N' (the batch). */
export type Dim = number | string;

export type TensorData = Float32Array | BigInt64Array | Int32Array | Uint32Array | Uint8Array;

export interface Tensor {
  name: string;
  dtype: DType;
  dims: number[];
  data: TensorData;
}

export interface ValueInfo {
  name: string;
  dtype: DType;
  /** Omitted where the shape is not known statically. */
  shape?: Dim[];
}

export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'ints'; value: number[] }
  | { kind: 'float'; value: number }
  | { kind: 'floats'; value: number[] }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: Tensor }
  | { kind: 'graph'; value: Graph };

export interface Node {
  op: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  /** The operator set: absent for ONNX's default domain (cnnlab emits only that); 'com.microsoft', ... */
  domain?: string;
}

/**
 * A run of nodes the autodiff treats as one op `op` (a gradient rule of that name): its external
 * inputs, the outputs the rule sees (the first carries the gradient, the rest are saved forward
 * values), and the nodes themselves. The nodes stay ordinary standard ONNX ops in the graph.
 */
export interface Composite {
  op: string;
  name: string;
  inputs: string[];
  outputs: string[];
  nodes: Set<Node>;
}

export interface Graph {
  name: string;
  nodes: Node[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers: Tensor[];
}

/** Attribute constructors: ONNX distinguishes int from float attributes, JavaScript does not. */
export const attr = {
  int: (value: number): AttrValue => ({ kind: 'int', value }),
  ints: (value: number[]): AttrValue => ({ kind: 'ints', value }),
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  floats: (value: number[]): AttrValue => ({ kind: 'floats', value }),
  string: (value: string): AttrValue => ({ kind: 'string', value }),
  tensor: (value: Tensor): AttrValue => ({ kind: 'tensor', value }),
  graph: (value: Graph): AttrValue => ({ kind: 'graph', value }),
};

/** Ops whose output has the broadcast shape of their inputs. */
const BROADCAST_OPS = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Where']);
/** Ops whose (first) output has the shape of their first input. */
const SAME_SHAPE_OPS = new Set(['Neg', 'Relu', 'Exp', 'Log', 'Sqrt', 'Identity', 'Reciprocal', 'Abs', 'Softmax', 'LogSoftmax', 'Dropout']);

/**
 * Output shape rules by op, registered by the op table (graph-builder/ops/table.ts) when it loads:
 * the builder notes an output's shape from them where the sets above do not give it. (The table
 * imports the gradient rules, which import this file, so it registers itself instead of being
 * imported here.)
 */
export type ShapeRuleFn = (node: Node, ctx: { shape: (v: string) => Dim[]; constant: (v: string) => number[] | undefined }) => Dim[];
const shapeRules = new Map<string, ShapeRuleFn>();
export function registerShapeRules(rules: Iterable<[string, ShapeRuleFn]>): void {
  for (const [op, rule] of rules) shapeRules.set(op, rule);
}

/** NumPy-style broadcast of static shapes; undefined where they cannot be combined statically. */
export function broadcastShapes(shapes: Dim[][]): Dim[] | undefined {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + i] ?? 1;
      if (v === 1) continue;
      if (d === 1) d = v;
      else if (d !== v) return undefined;
    }
    out.push(d);
  }
  return out;
}

/**
 * Builds one graph. `names` is shared with enclosing builders so that a Loop body never
 * shadows an outer value (ONNX forbids it).
 */
export class GraphBuilder {
  readonly graph: Graph;
  /** Static shapes of values, where known (the batch dimension is 'N'). */
  readonly shapes = new Map<string, Dim[]>();
  readonly dtypes = new Map<string, DType>();
  /** Node runs differentiated as a whole by the gradient rule named after their op. */
  readonly composites: Composite[] = [];
  /** The values of the Constant nodes this builder made (axes, shapes), for the shape rules. */
  private readonly constants = new Map<string, Tensor>();
  private readonly names: Map<string, number>;

  constructor(name: string, names: Map<string, number> = new Map()) {
    this.graph = { name, nodes: [], inputs: [], outputs: [], initializers: [] };
    this.names = names;
  }

  /** A builder for a subgraph (a Loop body) sharing this one's name space. */
  subgraph(name: string): GraphBuilder {
    return new GraphBuilder(name, this.names);
  }

  /** A name not used before in this graph or its parents: `base`, then `base_1`, ... */
  fresh(base: string): string {
    const n = this.names.get(base);
    if (n === undefined) {
      this.names.set(base, 0);
      return base;
    }
    let k = n + 1;
    while (this.names.has(`${base}_${k}`)) k++;
    this.names.set(base, k);
    this.names.set(`${base}_${k}`, 0);
    return `${base}_${k}`;
  }

  /** Marks a name as taken (e.g. a graph input whose name is fixed by the interface). */
  reserve(name: string): string {
    if (this.names.has(name)) throw new Error(`graph ${this.graph.name}: name ${name} is used twice`);
    this.names.set(name, 0);
    return name;
  }

  note(name: string, dtype: DType, shape?: Dim[]): void {
    this.dtypes.set(name, dtype);
    if (shape) this.shapes.set(name, shape);
  }

  input(name: string, dtype: DType, shape?: Dim[]): string {
    this.reserve(name);
    this.graph.inputs.push({ name, dtype, shape });
    this.note(name, dtype, shape);
    return name;
  }

  /** A graph input under a fresh name derived from `hint` (Loop bodies, whose inputs are positional). */
  freshInput(hint: string, dtype: DType, shape?: Dim[]): string {
    const name = this.fresh(hint);
    this.graph.inputs.push({ name, dtype, shape });
    this.note(name, dtype, shape);
    return name;
  }

  output(name: string, dtype?: DType, shape?: Dim[]): void {
    this.graph.outputs.push({ name, dtype: dtype ?? this.dtypes.get(name) ?? 'float32', shape: shape ?? this.shapes.get(name) });
  }

  /**
   * Makes `value` a graph output named `name` through an Identity node (output names are part
   * of an artifact's interface; reserve them before emitting the rest to keep them free).
   */
  expose(value: string, name: string, dtype?: DType, shape?: Dim[]): void {
    if (!this.names.has(name)) this.reserve(name);
    this.graph.nodes.push({ op: 'Identity', name: this.fresh(`${name}_node`), inputs: [value], outputs: [name], attrs: {} });
    this.output(name, dtype ?? this.dtypes.get(value), shape ?? this.shapes.get(value));
  }

  initializer(tensor: Tensor): string {
    this.reserve(tensor.name);
    this.graph.initializers.push(tensor);
    this.note(tensor.name, tensor.dtype, tensor.dims);
    return tensor.name;
  }

  /** Emits one node; output names are fresh names derived from `hint` (or the op). */
  node(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs = 1, hint?: string): string[] {
    const base = hint ?? op.toLowerCase();
    const outs = Array.from({ length: outputs }, (_, i) => this.fresh(outputs === 1 ? base : `${base}_out${i}`));
    this.graph.nodes.push({ op, name: this.fresh(`${base}_node`), inputs, outputs: outs, attrs });
    return outs;
  }

  /** Emits a node with a single output and returns its name (its shape noted where it follows from the inputs). */
  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, hint?: string): string {
    const out = this.node(op, inputs, attrs, 1, hint)[0];
    const known = inputs.map((i) => this.shapes.get(i));
    if (BROADCAST_OPS.has(op) && known.every((s) => s !== undefined)) {
      const shape = broadcastShapes(known as Dim[][]);
      if (shape) this.shapes.set(out, shape);
    } else if (SAME_SHAPE_OPS.has(op) && known[0]) {
      this.shapes.set(out, known[0]);
    } else if (shapeRules.has(op) && inputs.every((i, k) => i === '' || known[k] !== undefined)) {
      this.noteFromRule(op, inputs, attrs, out);
    }
    return out;
  }

  /** The op table's shape rule for a node just emitted, where it can tell (constant inputs from this builder's Constant nodes). */
  private noteFromRule(op: string, inputs: string[], attrs: Record<string, AttrValue>, out: string): void {
    const node = this.graph.nodes[this.graph.nodes.length - 1];
    const constant = (v: string) => {
      const t = this.constants.get(v);
      return t ? Array.from(t.data as ArrayLike<number | bigint>, Number) : undefined;
    };
    try {
      this.shapes.set(out, shapeRules.get(op)!({ ...node, inputs, attrs }, { shape: (v) => this.shapes.get(v)!, constant }));
    } catch {
      // A rule that cannot tell (a symbolic size where it needs a number) leaves the shape unknown, as before.
    }
  }

  /**
   * Emits `body`'s nodes as one composite op for the autodiff: `inputs` are the values it reads
   * from outside, `body` returns the outputs (gradient-carrying output first, then saved values).
   */
  composite(op: string, inputs: string[], body: () => string[]): string[] {
    const start = this.graph.nodes.length;
    const outputs = body();
    this.composites.push({ op, name: this.fresh(`${op}_composite`), inputs, outputs, nodes: new Set(this.graph.nodes.slice(start)) });
    return outputs;
  }

  /** A Cast of `x` to `dtype` (its shape, where known, carries over). */
  cast(x: string, dtype: DType, hint?: string): string {
    const out = this.op('Cast', [x], { to: attr.int(DTYPE_CODE[dtype]) }, hint);
    const shape = this.shapes.get(x);
    this.note(out, dtype, shape);
    return out;
  }

  /** A float32 constant (a Constant node, so it also works inside Loop bodies). */
  constF(values: number[] | Float32Array, dims: number[] = [values.length], hint = 'const'): string {
    const name = this.fresh(hint);
    const value: Tensor = { name: `${name}_value`, dtype: 'float32', dims, data: Float32Array.from(values) };
    this.graph.nodes.push({ op: 'Constant', name: this.fresh(`${name}_node`), inputs: [], outputs: [name], attrs: { value: attr.tensor(value) } });
    this.constants.set(name, value);
    this.note(name, 'float32', dims);
    return name;
  }

  /** An int64 constant (shapes, axes, indices). */
  constI(values: number[], dims: number[] = [values.length], hint = 'const_i64'): string {
    const name = this.fresh(hint);
    const value: Tensor = { name: `${name}_value`, dtype: 'int64', dims, data: BigInt64Array.from(values.map((v) => BigInt(v))) };
    this.graph.nodes.push({ op: 'Constant', name: this.fresh(`${name}_node`), inputs: [], outputs: [name], attrs: { value: attr.tensor(value) } });
    this.constants.set(name, value);
    this.note(name, 'int64', dims);
    return name;
  }

  /** A float32 scalar constant. */
  scalar(value: number, hint = 'scalar'): string {
    return this.constF([value], [], hint);
  }
}
