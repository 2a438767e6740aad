/**
 * Preloaded into a CLI process (`node --import tsx --import ./test/helpers/disk-full.ts ...`) to
 * simulate a disk that fills up: writes under CNNLAB_TEST_DISK_DIR may use CNNLAB_TEST_DISK_BYTES
 * bytes in all; the write that crosses the limit stores what still fits (a torn write, as a real
 * full disk does) and fails with ENOSPC, and so does every later one. With
 * CNNLAB_TEST_DISK_REPORT set, every write under the folder is listed there at exit as
 * { path, start, bytes } (so a test can aim a budget at the middle of any one write).
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { resolve } from 'node:path';

const root = resolve(process.env.CNNLAB_TEST_DISK_DIR ?? '/nonexistent');
let budget = Number(process.env.CNNLAB_TEST_DISK_BYTES ?? Infinity);
let written = 0;
const log: { path: string; start: number; bytes: number }[] = [];

type Data = string | Uint8Array;
const bytesOf = (data: Data): Uint8Array =>
  typeof data === 'string' ? Buffer.from(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

function limited<A extends unknown[]>(original: (path: fs.PathOrFileDescriptor, data: Data, ...rest: A) => void) {
  return (path: fs.PathOrFileDescriptor, data: Data, ...rest: A): void => {
    if (typeof path === 'number' || !resolve(String(path)).startsWith(root)) return original(path, data, ...rest);
    const bytes = bytesOf(data);
    if (bytes.length <= budget) {
      budget -= bytes.length;
      log.push({ path: String(path), start: written, bytes: bytes.length });
      written += bytes.length;
      return original(path, bytes, ...rest);
    }
    const fits = Math.max(0, budget);
    if (fits > 0) original(path, bytes.subarray(0, fits), ...rest);
    budget = 0;
    throw Object.assign(new Error(`ENOSPC: no space left on device, write '${String(path)}'`), { code: 'ENOSPC', errno: -28, syscall: 'write', path: String(path) });
  };
}

const writeFileSync = fs.writeFileSync.bind(fs);
const appendFileSync = fs.appendFileSync.bind(fs);
fs.writeFileSync = limited(writeFileSync) as typeof fs.writeFileSync;
fs.appendFileSync = limited(appendFileSync) as typeof fs.appendFileSync;
syncBuiltinESMExports();

const report = process.env.CNNLAB_TEST_DISK_REPORT;
if (report) process.on('exit', () => writeFileSync(report, JSON.stringify(log)));
