import { CnnlabError } from '../../common/errors.ts';

/**
 * The checkpoint format, without Node: "CNNLABCK", u32 version, u32 header length, a JSON header
 * (metadata and a table of tensors), the tensors' little-endian bytes (8-byte aligned), and a
 * sha256 of everything before it. The hash is a function the caller gives: node:crypto in
 * checkpoint.ts (files), Web Crypto in the demo page (which bundles this module for the browser).
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

/** A sha256 of `data` (32 bytes). */
export type Sha256 = (data: Uint8Array) => Uint8Array;

interface TensorEntry {
  name: string;
  dtype: 'float32' | 'int64';
  dims: number[];
  offset: number;
  length: number;
}

const BYTES: Record<CkptTensor['dtype'], number> = { float32: 4, int64: 8 };

/** A checkpoint's bytes, hashed with `sha256`. */
export function encodeCheckpointWith(ckpt: Checkpoint, sha256: Sha256): Uint8Array {
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
  out.set(sha256(out.subarray(0, total - HASH_BYTES)), total - HASH_BYTES);
  return out;
}

const invalid = (file: string, what: string): never => {
  throw new CnnlabError(`${file}: not a valid cnnlab checkpoint (${what})`);
};

/** The part of a checkpoint's bytes its trailing sha256 covers (a file too short for one is an error naming `file`). */
function hashedPart(bytes: Uint8Array, file: string): Uint8Array {
  if (bytes.length < 16 + HASH_BYTES) invalid(file, `${bytes.length} bytes is too short`);
  return bytes.subarray(0, bytes.length - HASH_BYTES);
}

/** Decodes a checkpoint whose hashed part has sha256 `digest`; anything malformed is one line naming `file`. */
function parseCheckpoint(bytes: Uint8Array, file: string, digest: Uint8Array): Checkpoint {
  const bad = (what: string) => invalid(file, what);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) bad('wrong magic');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== VERSION) bad(`version ${version}, expected ${VERSION}`);
  const headerLength = view.getUint32(12, true);
  if (headerLength > MAX_HEADER || 16 + headerLength > bytes.length - HASH_BYTES) bad(`header length ${headerLength} exceeds the file`);
  const stored = bytes.subarray(bytes.length - HASH_BYTES);
  if (digest.length !== HASH_BYTES || !digest.every((v, i) => v === stored[i])) bad('checksum mismatch: the file is truncated or corrupt');
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

/** Decodes a checkpoint, checking its sha256 with `sha256`; anything malformed is one line naming `file`. */
export function decodeCheckpointWith(bytes: Uint8Array, file: string, sha256: Sha256): Checkpoint {
  return parseCheckpoint(bytes, file, sha256(hashedPart(bytes, file)));
}

/** decodeCheckpointWith with Web Crypto's sha256 (asynchronous: browsers offer no synchronous one; Node >= 20 has it too). */
export async function decodeCheckpointAsync(bytes: Uint8Array, file: string): Promise<Checkpoint> {
  const part = hashedPart(bytes, file);
  // Web Crypto reads an ArrayBuffer-backed view; a copy where the bytes sit in a SharedArrayBuffer.
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', part.buffer instanceof ArrayBuffer ? (part as Uint8Array<ArrayBuffer>) : part.slice()));
  return parseCheckpoint(bytes, file, digest);
}
