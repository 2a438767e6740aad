/**
 * Builds ONNX models in the shapes torch.onnx.export writes (opset 13): input `input` with a
 * symbolic batch, `/scope/Op` node names, parameters as initialisers named like a state dict,
 * `x.view(x.size(0), -1)` as Shape/Gather/Unsqueeze/Concat/Reshape, BatchNormalization in
 * inference form with ONNX's momentum, Dropout with its ratio and training_mode inputs.
 */
import { Rng } from '../../common/rng.ts';
import { type AttrValue, attr, type Dim, type Node, type Tensor } from '../../graph-builder/graph/ir.ts';
import { encodeModel } from '../../graph-builder/graph/onnx.ts';

export class TorchStyleExport {
  readonly nodes: Node[] = [];
  readonly initializers: Tensor[] = [];
  private readonly rng: Rng;
  private count = 0;

  constructor(seed = 1) {
    this.rng = Rng.seeded(seed);
  }

  /** A float initialiser with values in ±scale. */
  param(name: string, dims: number[], scale = 0.3, fill?: number): string {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, () => (fill ?? this.rng.uniform(-scale, scale)));
    this.initializers.push({ name, dtype: 'float32', dims, data });
    return name;
  }

  constInts(values: number[], scope: string): string {
    return this.node('Constant', [], { value: attr.tensor({ name: 'value', dtype: 'int64', dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) }) }, scope)[0];
  }

  node(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, scope = op.toLowerCase(), outputs = 1): string[] {
    const k = this.count++;
    const outs = Array.from({ length: outputs }, (_, i) => `/${scope}/${op}_output_${i}${k ? `_${k}` : ''}`);
    this.nodes.push({ op, name: `/${scope}/${op}${k ? `_${k}` : ''}`, inputs, outputs: outs, attrs });
    return outs;
  }

  conv(scope: string, x: string, cin: number, cout: number, k: number, o: { stride?: number; pad?: number; group?: number; bias?: boolean } = {}): string {
    const group = o.group ?? 1;
    const inputs = [x, this.param(`${scope}.weight`, [cout, cin / group, k, k], 1 / Math.sqrt((cin / group) * k * k))];
    if (o.bias ?? true) inputs.push(this.param(`${scope}.bias`, [cout], 0.1));
    const p = o.pad ?? 0;
    const s = o.stride ?? 1;
    return this.node('Conv', inputs, { dilations: attr.ints([1, 1]), group: attr.int(group), kernel_shape: attr.ints([k, k]), pads: attr.ints([p, p, p, p]), strides: attr.ints([s, s]) }, scope)[0];
  }

  batchNorm(scope: string, x: string, c: number, trainingMode = false): string {
    const inputs = [x, this.param(`${scope}.weight`, [c], 0, 1), this.param(`${scope}.bias`, [c], 0, 0), this.param(`${scope}.running_mean`, [c], 0, 0), this.param(`${scope}.running_var`, [c], 0, 1)];
    const attrs: Record<string, AttrValue> = { epsilon: attr.float(1e-5), momentum: attr.float(0.9) };
    if (trainingMode) attrs.training_mode = attr.int(1);
    return this.node('BatchNormalization', inputs, attrs, scope, trainingMode ? 3 : 1)[0];
  }

  op(op: string, x: string, scope = op.toLowerCase(), attrs: Record<string, AttrValue> = {}): string {
    return this.node(op, [x], attrs, scope)[0];
  }

  maxPool(x: string, k: number, scope = 'pool'): string {
    return this.node('MaxPool', [x], { ceil_mode: attr.int(0), kernel_shape: attr.ints([k, k]), pads: attr.ints([0, 0, 0, 0]), strides: attr.ints([k, k]) }, scope)[0];
  }

  /** `x.view(x.size(0), -1)` as PyTorch 1.13 exports it. */
  viewBatch(x: string): string {
    const shape = this.node('Shape', [x], {}, 'view')[0];
    const n = this.node('Gather', [shape, this.node('Constant', [], { value: attr.tensor({ name: 'value', dtype: 'int64', dims: [], data: BigInt64Array.of(0n) }) }, 'view')[0]], { axis: attr.int(0) }, 'view')[0];
    const n1 = this.node('Unsqueeze', [n, this.constInts([0], 'view')], {}, 'view')[0];
    const target = this.node('Concat', [n1, this.constInts([-1], 'view')], { axis: attr.int(0) }, 'view')[0];
    return this.node('Reshape', [x, target], {}, 'view')[0];
  }

  dropout(x: string, p: number, scope = 'dropout'): string {
    const ratio = this.node('Constant', [], { value: attr.tensor({ name: 'value', dtype: 'float32', dims: [], data: Float32Array.of(p) }) }, scope)[0];
    const mode = this.node('Constant', [], { value: attr.tensor({ name: 'value', dtype: 'bool', dims: [], data: Uint8Array.of(0) }) }, scope)[0];
    return this.node('Dropout', [x, ratio, mode], {}, scope)[0];
  }

  gemm(scope: string, x: string, inF: number, outF: number): string {
    const w = this.param(`${scope}.weight`, [outF, inF], 1 / Math.sqrt(inF));
    const b = this.param(`${scope}.bias`, [outF], 0.1);
    return this.node('Gemm', [x, w, b], { alpha: attr.float(1), beta: attr.float(1), transB: attr.int(1) }, scope)[0];
  }

  /** The model bytes, the last value renamed `output`. */
  build(last: string, o: { batch?: Dim; opset?: number; channels?: number; classes?: number } = {}): Uint8Array {
    for (const n of this.nodes) n.outputs = n.outputs.map((v) => (v === last ? 'output' : v));
    for (const n of this.nodes) n.inputs = n.inputs.map((v) => (v === last ? 'output' : v));
    const batch = o.batch ?? 'batch';
    return encodeModel(
      {
        name: 'torch_jit',
        nodes: this.nodes,
        inputs: [{ name: 'input', dtype: 'float32', shape: [batch, o.channels ?? 1, 28, 28] }],
        outputs: [{ name: 'output', dtype: 'float32', shape: [batch, o.classes ?? 10] }],
        initializers: this.initializers,
      },
      { opset: o.opset ?? 13, producer: 'pytorch' },
    );
  }
}
