import { accessSync, appendFileSync, constants, existsSync, mkdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { CnnlabError } from './errors.ts';

/**
 * Creates a folder and its missing parents one level at a time, after checking that the nearest
 * existing ancestor is writable. (Node's recursive mkdir never returns for some paths, /proc/x
 * among them, so it is not used.)
 */
export function ensureDir(dir: string): void {
  const missing: string[] = [];
  let d = resolve(dir);
  while (!existsSync(d)) {
    missing.push(d);
    const parent = dirname(d);
    if (parent === d) break;
    d = parent;
  }
  accessSync(d, constants.W_OK);
  for (const m of missing.reverse()) mkdirSync(m);
}

/**
 * Writes a file atomically: a reader sees the old or the new content, never a torn one.
 * A failure (read-only folder, disk full) is a one-line error naming the file; the old file stays.
 */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    ensureDir(dirname(path));
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    throw new CnnlabError(`${path}: cannot write (${e.code ?? e.message})`);
  }
}

/**
 * Appends a whole record or nothing: if the write fails part-way (disk full), the file is cut
 * back to its old length, so a log never ends in half a line. A one-line error names the file.
 */
export function appendWhole(path: string, data: Uint8Array | string): void {
  const before = existsSync(path) ? statSync(path).size : 0;
  try {
    appendFileSync(path, data);
  } catch (err) {
    try {
      if (existsSync(path)) truncateSync(path, before);
    } catch {
      // Cutting back can fail only on a broken disk; the reader skips a torn last record too.
    }
    const e = err as NodeJS.ErrnoException;
    throw new CnnlabError(`${path}: cannot write (${e.code ?? e.message})`);
  }
}
