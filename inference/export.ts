import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { asInputError, InputError } from '../common/errors.ts';
import { writeFileAtomic } from '../common/files.ts';
import { cardEntries } from '../graph-builder/artifacts/model-card.ts';
import { decodeGraph } from '../graph-builder/graph/onnx.ts';
import { readOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { encodeNpz } from '../graph-builder/export/npz.ts';
import { encodeSafetensors, type NamedTensor } from '../graph-builder/export/safetensors.ts';

export const EXPORT_FORMATS = ['safetensors', 'npz', 'onnx'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** The model file of a run folder (best.onnx or last.onnx), or the .onnx file given. */
export function runModelFile(target: string, which: 'best' | 'last'): string {
  if (existsSync(target) && statSync(target).isDirectory()) {
    const file = join(target, `${which}.onnx`);
    if (!existsSync(file)) throw new InputError(`${target}: no ${which}.onnx in this folder (a run folder has one after its first epoch)`);
    return file;
  }
  if (!existsSync(target)) throw new InputError(`${target}: no such run folder or .onnx file`);
  return target;
}

/**
 * A trained model's parameters and BatchNorm statistics under their names (the layer table's
 * `conv1.weight`, or an imported model's own), as safetensors (PyTorch: safetensors.torch.load_file,
 * then model.load_state_dict), npz (numpy.load) or the ONNX model itself.
 */
export function exportModel(file: string, format: ExportFormat, out: string): { tensors: number; values: number } {
  let bytes: Uint8Array;
  try {
    bytes = readOnnxFile(file, readFileSync(file)).bytes;
  } catch (err) {
    throw asInputError(err);
  }
  let decoded;
  try {
    decoded = decodeGraph(bytes);
  } catch (err) {
    throw new InputError(`${file}: not an ONNX model (${(err as Error).message.split('\n')[0]})`);
  }
  const tensors: NamedTensor[] = decoded.graph.initializers
    .filter((t) => t.dtype === 'float32')
    .map((t) => ({ name: t.name, shape: t.dims, data: t.data as Float32Array }));
  if (!tensors.length) throw new InputError(`${file}: holds no float parameters to export`);
  const metadata = cardEntries(decoded.metadata, ['layers']);
  if (format === 'safetensors') writeFileAtomic(out, encodeSafetensors(tensors, metadata));
  else if (format === 'npz') writeFileAtomic(out, encodeNpz(tensors));
  else writeFileAtomic(out, bytes);
  return { tensors: tensors.length, values: tensors.reduce((a, t) => a + t.data.length, 0) };
}
