import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CnnlabError } from '../common/errors.ts';
import { decodeModel } from '../graph-builder/graph/onnx.ts';
import type { Runtime, Session } from '../runtime/ort.ts';

export interface LoadedModel {
  path: string;
  bytes: Uint8Array;
  architecture: string;
  dataset: string;
  classes: string[];
  parameters: number;
  testAccuracy?: number;
  metadata: Record<string, string>;
}

const MAX_MODEL_BYTES = 512 * 1024 * 1024;

/** The newest run folder under runs/ that holds a model, for commands given no model. */
export function latestRun(root = 'runs'): string | undefined {
  if (!existsSync(root)) return undefined;
  const runs = readdirSync(root)
    .map((d) => join(root, d))
    .filter((d) => existsSync(join(d, 'best.onnx')))
    .sort((a, b) => statSync(join(b, 'best.onnx')).mtimeMs - statSync(join(a, 'best.onnx')).mtimeMs);
  return runs[0];
}

/** A run folder (its best.onnx) or an .onnx file cnnlab exported, checked for the inference interface. */
export function loadInferenceModel(target: string | undefined): LoadedModel {
  const where = target ?? latestRun();
  if (!where) throw new CnnlabError('no model given and no run with a best.onnx under runs/; train one first (cnnlab train partB) or pass a model', 2);
  let path = where;
  if (existsSync(where) && statSync(where).isDirectory()) {
    path = ['best.onnx', 'last.onnx', 'inference.onnx'].map((f) => join(where, f)).find(existsSync) ?? '';
    if (!path) throw new CnnlabError(`${where}: no best.onnx, last.onnx or inference.onnx in this folder`, 2);
  }
  if (!existsSync(path)) throw new CnnlabError(`${path}: no such file or run folder`, 2);
  const size = statSync(path).size;
  if (size > MAX_MODEL_BYTES) throw new CnnlabError(`${path}: ${size} bytes is larger than any cnnlab model (limit ${MAX_MODEL_BYTES})`);
  const bytes = readFileSync(path);
  let decoded;
  try {
    decoded = decodeModel(bytes);
  } catch (err) {
    throw new CnnlabError(`${path}: not an ONNX model (${(err as Error).message.split('\n')[0]})`);
  }
  const input = decoded.inputs.find((i) => i.name === 'image');
  if (!input || !decoded.outputs.some((o) => o.name === 'probabilities')) {
    throw new CnnlabError(`${path}: expected an inference model with input 'image' and output 'probabilities' (found inputs ${decoded.inputs.map((i) => i.name).join(', ') || 'none'})`);
  }
  const md = decoded.metadata;
  let classes: string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
  try {
    if (md['cnnlab.classes']) classes = JSON.parse(md['cnnlab.classes']) as string[];
  } catch {
    throw new CnnlabError(`${path}: metadata cnnlab.classes is not valid JSON`);
  }
  if (!Array.isArray(classes) || classes.length !== 10 || !classes.every((c) => typeof c === 'string')) throw new CnnlabError(`${path}: metadata cnnlab.classes must list 10 class names`);
  const acc = Number(md['cnnlab.test_accuracy']);
  return {
    path,
    bytes,
    architecture: md['cnnlab.architecture'] ?? 'unknown',
    dataset: md['cnnlab.dataset'] ?? 'mnist',
    classes,
    parameters: Number(md['cnnlab.parameters'] ?? 0),
    testAccuracy: Number.isFinite(acc) ? acc : undefined,
    metadata: md,
  };
}

/** An onnxruntime session for a loaded model; a model onnxruntime refuses is a one-line error naming the file. */
export async function openModelSession(rt: Runtime, model: LoadedModel): Promise<Session> {
  try {
    return await rt.createSession(model.bytes);
  } catch (err) {
    throw new CnnlabError(`${model.path}: onnxruntime cannot load it (${(err as Error).message.split('\n')[0].slice(0, 300)})`);
  }
}
