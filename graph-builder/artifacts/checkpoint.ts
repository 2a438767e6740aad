import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CnnlabError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/files.ts';
import { type Checkpoint, decodeCheckpointWith, encodeCheckpointWith } from './checkpoint-codec.ts';

/**
 * Checkpoint files (the format is checkpoint-codec.ts's, hashed here with node:crypto). Written
 * atomically (temp file + rename): a crash leaves the old or the new file, and the checksum
 * catches anything else.
 */
export type { Checkpoint, CkptTensor } from './checkpoint-codec.ts';

const sha256 = (data: Uint8Array): Uint8Array => createHash('sha256').update(data).digest();

/** A checkpoint's bytes. */
export function encodeCheckpoint(ckpt: Checkpoint): Uint8Array {
  return encodeCheckpointWith(ckpt, sha256);
}

/** A checkpoint from its bytes; anything malformed is one line naming `file`. */
export function decodeCheckpoint(bytes: Uint8Array, file: string): Checkpoint {
  return decodeCheckpointWith(bytes, file, sha256);
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
