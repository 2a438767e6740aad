import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeCheckpointAsync } from '../graph-builder/artifacts/checkpoint-codec.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';

const ckpt = {
  meta: { architecture: 'partA', step: 3 },
  tensors: new Map([
    ['fc.weight', { dtype: 'float32' as const, dims: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, 1e-7, 6) }],
    ['step', { dtype: 'int64' as const, dims: [], data: BigInt64Array.of(3n) }],
  ]),
};

test('the browser-safe decoder (Web Crypto sha256) reads what the Node encoder writes, as the Node decoder does', async () => {
  const bytes = encodeCheckpoint(ckpt);
  const web = await decodeCheckpointAsync(bytes, 'train_state.bin');
  assert.deepEqual(web, decodeCheckpoint(bytes, 'train_state.bin'));
  assert.deepEqual(web.tensors.get('fc.weight')!.data, ckpt.tensors.get('fc.weight')!.data);
});

test('the browser-safe decoder refuses a corrupt or short checkpoint with the Node decoder’s one line', async () => {
  const bytes = encodeCheckpoint(ckpt);
  bytes[40] ^= 1;
  assert.throws(() => decodeCheckpoint(bytes, 'c.bin'), /^CnnlabError: c\.bin: not a valid cnnlab checkpoint \(checksum mismatch/);
  await assert.rejects(decodeCheckpointAsync(bytes, 'c.bin'), /^CnnlabError: c\.bin: not a valid cnnlab checkpoint \(checksum mismatch/);
  await assert.rejects(decodeCheckpointAsync(bytes.subarray(0, 20), 'c.bin'), /20 bytes is too short/);
});
