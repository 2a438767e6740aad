import { zipSync } from 'fflate';
import type { NamedTensor } from './safetensors.ts';

/** One .npy file (format 1.0): magic, version, a padded Python-literal header, little-endian float32 data. */
function npy(t: NamedTensor): Uint8Array {
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + t.data.byteLength);
  out.set([0x93, ...new TextEncoder().encode('NUMPY'), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), 10 + header.length);
  return out;
}

/** A NumPy .npz archive (what `numpy.load` opens): one `<name>.npy` per tensor, stored uncompressed. */
export function encodeNpz(tensors: NamedTensor[]): Uint8Array {
  return zipSync(Object.fromEntries(tensors.map((t) => [`${t.name}.npy`, npy(t)])), { level: 0 });
}
