import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CnnlabError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/files.ts';

/**
 * Checkpoint file: "CNNLABCK", u32 version, u32 header length, a JSON header (metadata and a
 * table of tensors), the tensors' little-endian bytes, and a sha256 of everything before it.
 * Written atomically (temp file + rename): a crash leaves the old or the new file, and the
 * checksum catches anything else.
 */
const MAGIC = 'CNNLABCK';
const VERSION = 1;
const HASH_BYTES = 32;
const MAX_HEADER = 16 * 1024 * 1024;

export type CkptTensor =
  | { dtype: 'float32'; dims: number[]; data: Float32Array }
  | { dtype: 'int64'; dims: number[]; data: BigInt64Array };

export interface Checkpoint {
  meta: Record<string, unknown>;
  tensors: Map<string, CkptTensor>;
}

interface TensorEntry {
  name: string;
  dtype: 'float32' | 'int64';
  dims: number[];
  offset: number;
  length: number;
}

const BYTES: Record<CkptTensor['dtype'], number> = { float32: 4, int64: 8 };

export function encodeCheckpoint(ckpt: Checkpoint): Uint8Array {
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, t] of ckpt.tensors) {
    entries.push({ name, dtype: t.dtype, dims: t.dims, offset, length: t.data.byteLength });
    offset += Math.ceil(t.data.byteLength / 8) * 8;
  }
  const header = new TextEncoder().encode(JSON.stringify({ meta: ckpt.meta, tensors: entries }));
  const headerPadded = Math.ceil((16 + header.length) / 8) * 8 - 16;
  const total = 16 + headerPadded + offset + HASH_BYTES;
  const out = new Uint8Array(total);
  out.set(new TextEncoder().encode(MAGIC), 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, VERSION, true);
  view.setUint32(12, header.length, true);
  out.set(header, 16);
  out.fill(0x20, 16 + header.length, 16 + headerPadded);
  const base = 16 + headerPadded;
  entries.forEach((e) => {
    const t = ckpt.tensors.get(e.name)!;
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), base + e.offset);
  });
  out.set(createHash('sha256').update(out.subarray(0, total - HASH_BYTES)).digest(), total - HASH_BYTES);
  return out;
}

export function decodeCheckpoint(bytes: Uint8Array, file: string): Checkpoint {
  const bad = (what: string): never => {
    throw new CnnlabError(`${file}: not a valid cnnlab checkpoint (${what})`);
  };
  if (bytes.length < 16 + HASH_BYTES) bad(`${bytes.length} bytes is too short`);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) bad('wrong magic');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== VERSION) bad(`version ${version}, expected ${VERSION}`);
  const headerLength = view.getUint32(12, true);
  if (headerLength > MAX_HEADER || 16 + headerLength > bytes.length - HASH_BYTES) bad(`header length ${headerLength} exceeds the file`);
  const digest = createHash('sha256').update(bytes.subarray(0, bytes.length - HASH_BYTES)).digest();
  if (!Buffer.from(digest).equals(Buffer.from(bytes.subarray(bytes.length - HASH_BYTES)))) bad('checksum mismatch: the file is truncated or corrupt');
  let header: { meta?: unknown; tensors?: unknown };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLength)));
  } catch {
    return bad('unreadable header');
  }
  if (typeof header.meta !== 'object' || header.meta === null || !Array.isArray(header.tensors)) bad('header lacks meta or tensors');
  const base = Math.ceil((16 + headerLength) / 8) * 8;
  const blob = bytes.length - HASH_BYTES - base;
  const tensors = new Map<string, CkptTensor>();
  for (const e of header.tensors as TensorEntry[]) {
    if (typeof e?.name !== 'string' || !(e.dtype in BYTES) || !Array.isArray(e.dims) || !e.dims.every((d) => Number.isInteger(d) && d >= 0)) bad(`bad tensor entry ${JSON.stringify(e).slice(0, 80)}`);
    const count = e.dims.reduce((a, b) => a * b, 1);
    const length = count * BYTES[e.dtype];
    if (e.length !== length || !Number.isInteger(e.offset) || e.offset < 0 || e.offset % 8 !== 0 || e.offset + length > blob) bad(`tensor ${e.name} lies outside the file`);
    const copy = new Uint8Array(bytes.subarray(base + e.offset, base + e.offset + length)).buffer; // a copy, aligned (Buffer.slice would be a view)
    tensors.set(e.name, e.dtype === 'float32' ? { dtype: 'float32', dims: e.dims, data: new Float32Array(copy) } : { dtype: 'int64', dims: e.dims, data: new BigInt64Array(copy) });
  }
  return { meta: header.meta as Record<string, unknown>, tensors };
}

export function writeCheckpoint(path: string, ckpt: Checkpoint): void {
  writeFileAtomic(path, encodeCheckpoint(ckpt));
}

export function readCheckpoint(path: string): Checkpoint {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new CnnlabError(`${path}: cannot read checkpoint (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return decodeCheckpoint(bytes, path);
}
