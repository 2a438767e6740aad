import { readFileSync, statSync } from 'node:fs';
import { CnnlabError } from './errors.ts';

/**
 * A JSON file cnnlab wrote (run config, sweep manifest, trial status), parsed; a file larger
 * than `maxBytes` or not valid JSON is a one-line CnnlabError naming it. Checking what the value
 * holds is the caller's job.
 */
export function readJsonFile(path: string, maxBytes = 64 * 1024 * 1024): unknown {
  const size = statSync(path).size;
  if (size > maxBytes) throw new CnnlabError(`${path}: ${size} bytes, larger than any file of its kind (limit ${maxBytes})`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CnnlabError(`${path}: not valid JSON (${(err as Error).message.split('\n')[0].slice(0, 120)})`);
  }
}
