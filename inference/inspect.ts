import { readFileSync, statSync } from 'node:fs';
import { asInputError, CnnlabError, InputError } from '../common/errors.ts';
import { countList } from '../common/text.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import type { ValueInfo } from '../graph-builder/graph/ir.ts';
import { decodeGraph, type DecodedGraph } from '../graph-builder/graph/onnx.ts';
import { readOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { frozenParams, trainableLine } from '../graph-builder/freeze.ts';
import { findHead } from '../graph-builder/import/head.ts';
import { checkTrainable, importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import { elementCount, type Model } from '../graph-builder/model.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { describePreparation, loadInferenceModel } from './model.ts';

const fmt = (n: number) => n.toLocaleString('en-US');
const value = (v: ValueInfo) => `${v.name}  ${v.dtype} [${v.shape?.join(', ') ?? '?'}]`;
const reason = (err: unknown) => {
  if (err instanceof CnnlabError) return err.message;
  throw err;
};

/** What fine-tuning on another class count does to the model's head. */
function headLine(model: Model): string {
  try {
    const h = findHead(model);
    return `with ${model.classes} classes as it is, any other count through a new head in place of ${h.node.op} node ${h.node.name}`;
  } catch {
    return `with ${model.classes} classes (no classifier layer found to replace for another count)`;
  }
}

/** Whether the model's train step builds (every op has a gradient rule, every rule accepts its node). */
function trainVerdict(model: Model): string {
  checkTrainable(model);
  compile(model, { optimizer: defaultOptimizer('sgd', 0, false), loss: model.outputKind === 'log-probabilities' ? 'nll' : 'cross-entropy', meta: { architecture: model.id, dataset: 'mnist', classes: [], mean: 0, std: 1 } });
  const buffers = model.params.filter((p) => !p.trainable).reduce((a, p) => a + elementCount(p.shape), 0);
  const loss = model.outputKind === 'log-probabilities' ? 'NLL on its log-probabilities' : 'cross-entropy on its logits';
  const folders = `image folders (--data-dir DIR) are converted to its ${model.inputShape.join('x')} input, ${headLine(model)}`;
  const fits = model.inputShape.join('x') === '1x28x28' && model.classes === 10 ? `MNIST, Fashion-MNIST, KMNIST and EMNIST digits fit it (1x28x28 images, 10 classes), and ${folders}` : `${folders} (the built-in datasets are 1x28x28)`;
  return `yes: ${fmt(model.trainableCount)} trainable parameters${buffers ? `, ${fmt(buffers)} BatchNorm statistics` : ''}, ${model.dropouts.size} dropout site(s), ${loss}; ${fits}`;
}

/** The parameters training would update, and the buffers it keeps, by name with their shapes. */
function parameterLines(model: Model, frozen?: ReadonlySet<string>): string[] {
  const trainable = model.params.filter((p) => p.trainable);
  const buffers = model.params.filter((p) => !p.trainable);
  const row = (p: Model['params'][number]) => `  ${p.name}  [${p.shape.join(', ')}]${frozen?.has(p.name) ? '  frozen' : ''}`;
  return [
    `trainable parameters: ${trainable.length} tensors, ${fmt(model.trainableCount)} values${frozen ? `; with this --freeze: ${trainableLine(model, frozen)}` : ''}`,
    ...trainable.map(row),
    ...(buffers.length ? [`buffers (BatchNorm running statistics): ${buffers.length} tensors`, ...buffers.map(row)] : []),
  ];
}

/** `cnnlab inspect`: what a model holds and what cnnlab can do with it, without running it. */
export function inspectModel(file: string, inputSize?: [number, number], freeze?: string): string {
  let raw: Uint8Array;
  try {
    raw = readFileSync(file);
  } catch (err) {
    throw new InputError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let onnx: ReturnType<typeof readOnnxFile>;
  try {
    onnx = readOnnxFile(file, raw);
  } catch (err) {
    throw asInputError(err);
  }
  const { bytes, dataFiles } = onnx;
  let d: DecodedGraph;
  try {
    d = decodeGraph(bytes);
  } catch (err) {
    throw new InputError(`${file}: not an ONNX model (${(err as Error).message.split('\n')[0]})`);
  }
  const g = d.graph;
  const inits = new Set(g.initializers.map((t) => t.name));
  const counts = new Map<string, number>();
  for (const n of g.nodes) {
    const key = n.domain ? `${n.domain}.${n.op}` : n.op;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const floats = g.initializers.filter((t) => t.dtype === 'float32');
  const lines = [
    `${file}: ${fmt(statSync(file).size)} bytes${dataFiles.length ? ` (weights in ${dataFiles.join(', ')})` : ''}, ${d.producer || 'unknown producer'}, opset ${d.opset}${d.domains.length ? ` (+ ${d.domains.join(', ')})` : ''}`,
    ...g.inputs.filter((i) => !inits.has(i.name)).map((i) => `input   ${value(i)}`),
    ...g.outputs.map((o) => `output  ${value(o)}`),
    `ops     ${countList(counts)} (${g.nodes.length} nodes)`,
    `weights ${fmt(floats.reduce((a, t) => a + elementCount(t.dims), 0))} values in ${floats.length} float initialisers${floats.length ? ` (${floats.slice(0, 4).map((t) => `${t.name} [${t.dims.join(', ')}]`).join(', ')}${floats.length > 4 ? ', ...' : ''})` : ''}`,
  ];
  if (Object.keys(d.metadata).length) lines.push(`metadata ${Object.keys(d.metadata).join(', ')}`);
  let evaluate: string;
  try {
    const m = loadInferenceModel(file, { inputSize });
    evaluate = `yes (${m.classes.length} classes)${m.native ? ", cnnlab's own inference model" : `; ${describePreparation(m)!.replace(`${file}: `, '')}`}`;
  } catch (err) {
    evaluate = `no: ${reason(err)}`;
  }
  let train: string;
  let model: Model | undefined;
  try {
    model = importOnnxModel(bytes, file, { inputSize });
    train = trainVerdict(model);
  } catch (err) {
    train = `no: ${reason(err)}`;
  }
  lines.push('', 'what cnnlab can do with it', `  eval, predict, serve: ${evaluate}`, `  train, fine-tune (cnnlab train --model ${file}): ${train}`);
  if (model) lines.push('', ...parameterLines(model, freeze ? frozenParams(model, freeze) : undefined));
  return lines.join('\n');
}
