import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { CnnlabError } from '../common/errors.ts';

/** IDX magic numbers: 0x00000803 (uint8, 3 dims) for images, 0x00000801 (uint8, 1 dim) for labels. */
export const IDX_IMAGES_MAGIC = 2051;
export const IDX_LABELS_MAGIC = 2049;

export type IdxKind = 'images' | 'labels';

export interface IdxTensor {
  dims: number[];
  data: Uint8Array;
}

/** The largest decompressed file we accept: Fashion-MNIST's train images are 47 MB. */
const MAX_IDX_BYTES = 512 * 1024 * 1024;

const GZIP_MAGIC = [0x1f, 0x8b];

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];
}

/** Decompresses gzip input (detected by its magic bytes, not its name); raw input passes through. */
export function maybeGunzip(bytes: Uint8Array, file: string): Uint8Array {
  if (!isGzip(bytes)) return bytes;
  try {
    return gunzipSync(bytes, { maxOutputLength: MAX_IDX_BYTES });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new CnnlabError(`${file}: not a valid gzip stream (${reason})`);
  }
}

/**
 * Parses one uint8 IDX file. `kind` fixes the expected magic and rank, so a labels file given
 * where images belong is caught here, with the file named.
 */
export function parseIdx(bytes: Uint8Array, file: string, kind: IdxKind): IdxTensor {
  const expectedMagic = kind === 'images' ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
  const rank = kind === 'images' ? 3 : 1;
  if (bytes.length < 4) {
    throw new CnnlabError(`${file}: expected an IDX ${kind} file (magic ${expectedMagic}), found only ${bytes.length} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== expectedMagic) {
    throw new CnnlabError(`${file}: expected IDX ${kind} magic ${expectedMagic}, found ${magic}`);
  }
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new CnnlabError(`${file}: truncated IDX header: expected ${headerBytes} bytes, found ${bytes.length}`);
  }
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const payload = dims.reduce((a, b) => a * b, 1);
  const found = bytes.length - headerBytes;
  if (found < payload) {
    throw new CnnlabError(
      `${file}: truncated payload: header says ${dims.join('x')} = ${payload} bytes, found ${found}`,
    );
  }
  if (found > payload) {
    throw new CnnlabError(
      `${file}: ${found - payload} bytes of trailing garbage after the ${dims.join('x')} payload`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

export function readIdxFile(file: string, kind: IdxKind): IdxTensor {
  let raw: Uint8Array;
  try {
    raw = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'read error';
    throw new CnnlabError(`${file}: cannot read (${code})`);
  }
  return parseIdx(maybeGunzip(raw, file), file, kind);
}

/** Encodes an IDX file; used by tests and by anyone exporting a slice of a dataset. */
export function encodeIdx(kind: IdxKind, dims: number[], data: Uint8Array): Uint8Array {
  const rank = kind === 'images' ? 3 : 1;
  if (dims.length !== rank) throw new Error(`IDX ${kind} need ${rank} dims, got ${dims.length}`);
  const out = new Uint8Array(4 + 4 * rank + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, kind === 'images' ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC, false);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * rank);
  return out;
}
