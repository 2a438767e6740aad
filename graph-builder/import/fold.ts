/**
 * Import-time constant folding: shape computations (PyTorch's Shape/Gather/Unsqueeze/Concat
 * before a Reshape, sizes computed for a Resize) evaluated on the host, with 'N' standing for
 * the symbolic batch size.
 */
import type { Dim, Node, Tensor } from '../graph/ir.ts';
import { attrInt } from '../ops/spec.ts';

/** Ops whose all-constant inputs are evaluated at import. */
export const FOLDABLE = new Set(['Shape', 'Gather', 'Unsqueeze', 'Squeeze', 'Concat', 'Slice', 'Cast', 'Add', 'Sub', 'Mul', 'Div', 'Identity', 'Reshape', 'ConstantOfShape', 'Floor', 'Ceil']);

/** A folded value: numbers, with 'N' where the batch size stands (from Shape of a batched value). */
export interface Folded {
  dims: number[];
  values: (number | 'N')[];
  dtype: Tensor['dtype'];
}

/** Evaluates one foldable node over folded inputs; undefined where it cannot be folded. */
export function foldNode(node: Node, inputs: Folded[], shapeOf: (v: string) => Dim[] | undefined): Folded | undefined {
  const int = (key: string, fallback: number) => attrInt(node, key, fallback);
  const vec = (values: (number | 'N')[], dtype: Tensor['dtype'] = 'int64'): Folded => ({ dims: [values.length], values, dtype });
  const [a, b] = inputs;
  switch (node.op) {
    case 'Shape': {
      const s = shapeOf(node.inputs[0]);
      if (!s || s.some((d) => typeof d === 'string' && d !== 'N')) return undefined;
      return vec(s.slice(int('start', 0), node.attrs.end ? int('end', s.length) : s.length) as (number | 'N')[]);
    }
    case 'Gather': {
      if (!a || !b || a.dims.length !== 1 || int('axis', 0) !== 0) return undefined;
      const pick = b.values.map((i) => (typeof i === 'number' ? a.values[i < 0 ? i + a.values.length : i] : undefined));
      if (pick.some((v) => v === undefined)) return undefined;
      return { dims: b.dims, values: pick as (number | 'N')[], dtype: a.dtype };
    }
    case 'Unsqueeze':
    case 'Squeeze':
      if (!a) return undefined;
      return a.dims.length <= 1 ? vec(a.values, a.dtype) : undefined;
    case 'Concat':
      return inputs.every((x) => x && x.dims.length === 1) ? vec(inputs.flatMap((x) => x.values), a.dtype) : undefined;
    case 'Slice': {
      if (!a || a.dims.length !== 1 || !b || !inputs[2]) return undefined;
      const n = a.values.length;
      const at = (v: number | 'N') => (typeof v === 'number' ? Math.max(0, Math.min(n, v < 0 ? v + n : v)) : undefined);
      const [start, end] = [at(b.values[0]), at(inputs[2].values[0])];
      const step = inputs[4] ? inputs[4].values[0] : 1;
      if (start === undefined || end === undefined || step !== 1) return undefined;
      return vec(a.values.slice(start, end), a.dtype);
    }
    case 'Cast': {
      if (!a) return undefined;
      const to = int('to', 0);
      // 1: float, 10/11: float16/double (kept as float); everything else an integer type.
      if (to === 1 || to === 10 || to === 11) return a.values.includes('N') ? undefined : { ...a, dtype: 'float32' };
      return { ...a, values: a.values.map((v) => (typeof v === 'number' ? Math.trunc(v) : v)), dtype: 'int64' };
    }
    case 'Floor':
    case 'Ceil':
      return a && !a.values.includes('N') ? { ...a, values: a.values.map((v) => (node.op === 'Floor' ? Math.floor(v as number) : Math.ceil(v as number))) } : undefined;
    case 'ConstantOfShape': {
      if (!a || a.values.includes('N')) return undefined;
      const dims = a.values as number[];
      const count = dims.reduce((x, y) => x * y, 1);
      if (count > 4096) return undefined;
      const t = node.attrs.value?.kind === 'tensor' ? node.attrs.value.value : undefined;
      const fill = t ? Number(t.data[0]) : 0;
      return { dims, values: new Array<number>(count).fill(fill), dtype: t?.dtype === 'float32' ? 'float32' : t ? 'int64' : 'float32' };
    }
    case 'Reshape': {
      if (!a || !b || a.values.includes('N') || b.values.includes('N')) return undefined;
      const target = b.values as number[];
      const known = target.reduce((x, y, i) => x * (y === -1 ? 1 : y === 0 ? a.dims[i] : y), 1);
      const dims = target.map((y, i) => (y === -1 ? a.values.length / known : y === 0 ? a.dims[i] : y));
      return dims.reduce((x, y) => x * y, 1) === a.values.length ? { ...a, dims } : undefined;
    }
    case 'Identity':
      return a;
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div': {
      if (!a || !b || a.values.includes('N') || b.values.includes('N')) return undefined;
      const float = a.dtype === 'float32' || b.dtype === 'float32';
      const n = Math.max(a.values.length, b.values.length);
      if (a.values.length !== n && a.values.length !== 1) return undefined;
      if (b.values.length !== n && b.values.length !== 1) return undefined;
      const f = { Add: (x: number, y: number) => x + y, Sub: (x: number, y: number) => x - y, Mul: (x: number, y: number) => x * y, Div: (x: number, y: number) => (float ? x / y : Math.trunc(x / y)) }[node.op];
      const values = Array.from({ length: n }, (_, i) => f(a.values[a.values.length === 1 ? 0 : i] as number, b.values[b.values.length === 1 ? 0 : i] as number));
      return { dims: a.values.length === n ? a.dims : b.dims, values, dtype: float ? 'float32' : a.dtype };
    }
    default:
      return undefined;
  }
}

export function foldedOf(t: Tensor): Folded {
  const values = t.data instanceof BigInt64Array ? Array.from(t.data, Number) : Array.from(t.data as ArrayLike<number>);
  return { dims: t.dims, values, dtype: t.dtype };
}

