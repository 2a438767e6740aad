/**
 * ONNX files on disk, with their weights inside or in external data files beside them (PyTorch
 * 2.x's exporter writes `net.onnx` + `net.onnx.data` by default). Reading inlines every external
 * tensor, so the rest of cnnlab works on one self-contained byte array; writing can put the
 * weights back into a data file beside the model, the layout a model came in.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize, sep } from 'node:path';
import onnxProto from 'onnx-proto';
import { InputError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/files.ts';

const { onnx } = onnxProto;
type ModelProto = onnxProto.onnx.ModelProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type GraphProto = onnxProto.onnx.IGraphProto;

export type WeightLayout = 'inline' | 'external';

export interface OnnxFile {
  /** The model with every tensor's data inside it. */
  bytes: Uint8Array;
  /** Where its weights were: inside the file, or in data files beside it. */
  layout: WeightLayout;
  /** The external data files it read, relative to the model's folder. */
  dataFiles: string[];
}

/** Every tensor of a graph and its subgraphs: initialisers and Constant nodes' values. */
function* tensorsOf(g: GraphProto): Generator<TensorProto> {
  yield* g.initializer ?? [];
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) {
      if (a.t) yield a.t;
      for (const t of a.tensors ?? []) yield t;
      if (a.g) yield* tensorsOf(a.g);
      for (const sub of a.graphs ?? []) yield* tensorsOf(sub);
    }
  }
}

const isExternal = (t: TensorProto) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL || (t.externalData?.length ?? 0) > 0;

/** A data file's path, which must stay inside the model's folder (ONNX's rule for `location`). */
function dataPath(modelPath: string, location: string, tensor: string): string {
  const rel = normalize(location);
  if (!location || isAbsolute(location) || rel.startsWith(`..${sep}`) || rel === '..') {
    throw new InputError(`${modelPath}: tensor ${tensor} keeps its data at '${location}'; expected a file beside the model`);
  }
  return join(dirname(modelPath), rel);
}

/** Reads `length` bytes at `offset` of an open file, or one line naming what is missing. */
function readSpan(fd: number, size: number, offset: number, length: number, where: string): Uint8Array {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new InputError(`${where}: bytes ${offset}..${offset + length} lie outside the ${size}-byte file`);
  }
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, length - done, offset + done);
    if (n <= 0) throw new InputError(`${where}: the file ended early`);
    done += n;
  }
  return out;
}

/** Moves each external tensor's bytes into the model (raw_data), reading the data files beside `modelPath`. */
function inlineExternal(m: ModelProto, modelPath: string): string[] {
  const files = new Map<string, { fd: number; size: number }>();
  try {
    for (const t of m.graph ? tensorsOf(m.graph) : []) {
      if (!isExternal(t)) continue;
      const entry = Object.fromEntries((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
      const name = t.name ?? '';
      const path = dataPath(modelPath, entry.location ?? '', name);
      let file = files.get(path);
      if (!file) {
        let fd: number;
        try {
          fd = openSync(path, 'r');
        } catch (err) {
          throw new InputError(`${modelPath}: tensor ${name} keeps its data in ${basename(path)}, which cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); keep it beside the model`);
        }
        file = { fd, size: fstatSync(fd).size };
        files.set(path, file);
      }
      const offset = Number(entry.offset ?? 0);
      const length = entry.length !== undefined ? Number(entry.length) : file.size - offset;
      t.rawData = readSpan(file.fd, file.size, offset, length, `${path} (tensor ${name})`);
      t.externalData = [];
      t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    }
  } finally {
    for (const f of files.values()) closeSync(f.fd);
  }
  return [...files.keys()].map((p) => basename(p));
}

/**
 * Reads an ONNX model and the external data files its tensors name. A file that is not an ONNX
 * model, or a missing or short data file, is one line naming the file.
 */
export function readOnnxFile(path: string, bytes: Uint8Array): OnnxFile {
  let m: ModelProto;
  try {
    m = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new InputError(`${path}: not an ONNX model (${(err as Error).message.split('\n')[0]})`);
  }
  if (!m.graph || ![...tensorsOf(m.graph)].some(isExternal)) return { bytes, layout: 'inline', dataFiles: [] };
  const dataFiles = inlineExternal(m, path);
  return { bytes: onnx.ModelProto.encode(m).finish(), layout: 'external', dataFiles };
}

/** Tensors smaller than this stay inside the model when writing external data (onnx's own default is 1 KiB). */
const EXTERNAL_MIN_BYTES = 1024;

/**
 * Writes a self-contained model to `path`, or with layout 'external' its tensors of 1 KiB and more
 * into `<file>.data` beside it (64-byte aligned, as onnx's tools write them). The data file is
 * written first, so a reader never finds a model whose data is missing.
 */
export function writeOnnxFile(path: string, bytes: Uint8Array, layout: WeightLayout): void {
  if (layout === 'inline') return writeFileAtomic(path, bytes);
  const m = onnx.ModelProto.decode(bytes);
  const location = `${basename(path)}.data`;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of m.graph ? tensorsOf(m.graph) : []) {
    const raw = t.rawData;
    if (!raw || raw.length < EXTERNAL_MIN_BYTES) continue;
    const pad = (64 - (offset % 64)) % 64;
    if (pad) chunks.push(new Uint8Array(pad));
    offset += pad;
    chunks.push(raw);
    t.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.length) },
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.rawData = new Uint8Array();
    offset += raw.length;
  }
  writeFileAtomic(join(dirname(path), location), Buffer.concat(chunks));
  writeFileAtomic(path, onnx.ModelProto.encode(m).finish());
}
