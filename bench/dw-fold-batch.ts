/**
 * An experiment on ResNet-18's full fine-tuning step (bench/finetune.ts's row): the stride-1
 * weight gradient (graph-builder's weightGradUnfolded, shifted-dY variant) computes one
 * [C_in*k_w, k_h*C_out] GEMM per image and sums them (MatMul [N, A, P] x [N, P, B], ReduceSum over
 * N). Where P (the padded rows times the output width) is small and A, B large (layer3, layer4),
 * that writes and re-reads N*A*B floats. Here that pair is rewritten in the compiled step as one
 * GEMM with the batch folded into its inner dimension: Transpose both operands to [A, N, P] and
 * [B, N, P], Reshape to [A, N*P] and [B, N*P], Gemm(transB). Rewritten where A*B/(A+B) > 4P (the
 * output several times the two operands: ResNet-18's layer4). Timed against the unchanged step,
 * interleaved.
 *
 *   npx tsx bench/dw-fold-batch.ts [--rounds 5] [--threads 2]
 *   npx tsx bench/profile.ts --finetune resnet18 --fold   (the rewritten step's profile)
 */
import { parseArgs } from 'node:util';
import onnxProto from 'onnx-proto';
import { createRuntime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { exportedModel, finetuneStep } from './finetune.ts';
import { FINETUNE_ROWS } from './rows.ts';

const { onnx } = onnxProto;
type GraphProto = onnxProto.onnx.IGraphProto;
type NodeProto = onnxProto.onnx.INodeProto;

/** The int64 values of a Constant node's tensor. */
function constInts(n: NodeProto): number[] {
  const t = n.attribute?.find((a) => a.name === 'value')?.t;
  if (t?.rawData && t.rawData.length) {
    const raw = t.rawData;
    return [...new BigInt64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))].map(Number);
  }
  return (t?.int64Data ?? []).map(Number);
}

/** Rewrites every per-image dW GEMM + ReduceSum pair in `g` (and its subgraphs) worth folding; returns how many. */
export function foldBatch(g: GraphProto): number {
  let count = 0;
  for (const n of g.node ?? []) for (const a of n.attribute ?? []) if (a.g) count += foldBatch(a.g);
  const nodes = g.node ?? [];
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const shape = (name: string) => constInts(producer.get(name)!);
  const added: NodeProto[] = [];
  for (const mm of nodes) {
    const out = mm.output?.[0] ?? '';
    if (mm.opType !== 'MatMul' || !out.endsWith('_rows_per_image')) continue;
    const sum = nodes.find((n) => n.opType === 'ReduceSum' && n.input?.[0] === out);
    const [flat, stackedT] = mm.input ?? [];
    const flatNode = producer.get(flat);
    const tNode = producer.get(stackedT);
    if (!sum || flatNode?.opType !== 'Reshape' || tNode?.opType !== 'Transpose') continue;
    const [, a, p] = shape(flatNode.input![1]);
    // B = A in ResNet's 3x3 convs. Folding where the output merely exceeds the operands
    // (A*B/(A+B) > P) took layer3's three (P = 224) from 297 to 382 ms and layer4's (P = 63)
    // from 703 to 459 (1 thread, kernel time per step): the operands' Transposes cost more than
    // the output they save until it is several times larger.
    if (a / 2 <= 4 * p) continue;
    const w = out.slice(0, -'_rows_per_image'.length);
    const perm = { name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints: [1, 0, 2] };
    const flatShape = `${w}_fold_shape`;
    added.push({ opType: 'Constant', name: `${flatShape}_node`, output: [flatShape], attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: { dataType: onnx.TensorProto.DataType.INT64, dims: [2], int64Data: [0, -1] } }] });
    added.push({ opType: 'Transpose', name: `${w}_fold_x_node`, input: [flat], output: [`${w}_fold_x`], attribute: [perm] });
    added.push({ opType: 'Reshape', name: `${w}_fold_x2_node`, input: [`${w}_fold_x`, flatShape], output: [`${w}_fold_x2`] });
    added.push({ opType: 'Transpose', name: `${w}_fold_dy_node`, input: [tNode.input![0]], output: [`${w}_fold_dy`], attribute: [perm] });
    added.push({ opType: 'Reshape', name: `${w}_fold_dy2_node`, input: [`${w}_fold_dy`, flatShape], output: [`${w}_fold_dy2`] });
    added.push({ opType: 'Gemm', name: `${w}_fold_gemm_node`, input: [`${w}_fold_x2`, `${w}_fold_dy2`], output: [sum.output![0]], attribute: [{ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 }] });
    (mm as { opType: string }).opType = 'Identity-drop';
    (sum as { opType: string }).opType = 'Identity-drop';
    (tNode as { opType: string }).opType = 'Identity-drop';
    count++;
  }
  // Dropped nodes out; new ones appended, then the list put back in topological order.
  const kept = [...nodes.filter((n) => n.opType !== 'Identity-drop'), ...added];
  g.node = topoSorted(kept, new Set([...(g.input ?? []).map((v) => v.name ?? ''), ...(g.initializer ?? []).map((t) => t.name ?? '')]));
  return count;
}

/** Nodes ordered so each comes after its inputs' producers (outer-scope names count as available). */
function topoSorted(nodes: NodeProto[], available: Set<string>): NodeProto[] {
  const produced = new Set(nodes.flatMap((n) => n.output ?? []));
  const ready = (n: NodeProto) => (n.input ?? []).every((i) => !i || available.has(i) || !produced.has(i));
  const out: NodeProto[] = [];
  let rest = nodes;
  while (rest.length) {
    const next = rest.filter(ready);
    if (!next.length) throw new Error('cycle');
    for (const n of next) for (const o of n.output ?? []) available.add(o);
    out.push(...next);
    rest = rest.filter((n) => !next.includes(n));
  }
  return out;
}

/** The A/B timing, interleaved rounds. */
async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, threads: { type: 'string', default: '2' } } });
  const row = FINETUNE_ROWS.find((r) => r.family === 'resnet18' && r.mode === 'full')!;
  const { built, params, batch } = await finetuneStep(row, exportedModel(row, process.env.TORCH_PYTHON ?? '/usr/bin/python3'));
  const m = onnx.ModelProto.decode(built.trainStep);
  const folded = foldBatch(m.graph!);
  const variants = { base: built.trainStep, fold: onnx.ModelProto.encode(m).finish() };
  console.log(`folded ${folded} weight gradients`);
  const rt = await createRuntime({ ep: 'cpu', threads: Number(values.threads) });
  const runners = { base: await StepRunner.create(rt, variants.base, built.iface, built.initialCheckpoint(params)), fold: await StepRunner.create(rt, variants.fold, built.iface, built.initialCheckpoint(params)) };
  const losses: Record<string, number[]> = { base: [], fold: [] };
  for (const k of ['base', 'fold'] as const) await runners[k].run(batch);
  const times: Record<string, number[]> = { base: [], fold: [] };
  for (let i = 0; i < Number(values.rounds); i++) {
    for (const k of (i % 2 ? ['fold', 'base'] : ['base', 'fold']) as ('base' | 'fold')[]) {
      const t0 = performance.now();
      losses[k].push((await runners[k].run(batch)).losses[0]);
      times[k].push(performance.now() - t0);
    }
    console.log(`round ${i + 1}: base ${times.base.at(-1)!.toFixed(0)} ms, fold ${times.fold.at(-1)!.toFixed(0)} ms`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`median ms per step: base ${median(times.base).toFixed(0)}, fold ${median(times.fold).toFixed(0)} (fold/base ${(median(times.fold) / median(times.base)).toFixed(3)}); losses after 2 steps ${losses.base[0]} vs ${losses.fold[0]}, after ${Number(values.rounds) + 1}: ${losses.base.at(-1)} vs ${losses.fold.at(-1)}`);
}

if (process.argv[1]?.endsWith('dw-fold-batch.ts')) await main();
