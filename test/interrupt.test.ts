import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Rng } from '../common/rng.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { readCheckpoint } from '../training/checkpoint.ts';
import { resolveRunConfig } from '../training/config.ts';
import { fit } from '../training/fit.ts';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const ARCH = 'jhu-net:bn=bn-dropout';
const FLAGS = ['--limit-train', '5000', '--epochs', '2', '--batch', '50', '--steps-per-run', '2', '--augment', '--seed', '11', '--threads', '2', '--checkpoint-every', '0.3'];

function run(args: string[], killAfterMs?: number): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('exit', (code) => {
      if (timer) clearTimeout(timer);
      resolve(code);
    });
  });
}

describe('SIGKILL at random moments', () => {
  it('every killed run resumes and ends with the parameters of an uninterrupted run', async () => {
    const reference = mkdtempSync(join(tmpdir(), 'cnnlab-ref-'));
    const cfg = resolveRunConfig(await loadArchitecture(ARCH), { 'limit-train': 5000, epochs: 2, batch: 50, 'steps-per-run': 2, augment: true, seed: 11, threads: 2, 'checkpoint-every': 0.3 });
    await fit(cfg, { runDir: reference, resume: false, progress: false, log: () => {} });
    const want = readCheckpoint(join(reference, 'checkpoint.ckpt'));
    const rng = Rng.seeded(2024);
    for (let round = 0; round < 3; round++) {
      const out = join(mkdtempSync(join(tmpdir(), 'cnnlab-kill-')), 'run');
      let kills = 0;
      let code = await run(['train', ARCH, ...FLAGS, '--out', out], rng.int(1200, 3000));
      while (code !== 0) {
        kills++;
        assert.ok(kills < 10, 'the run never finished');
        const resume = existsSync(join(out, 'checkpoint.ckpt'));
        const args = resume ? ['train', '--resume', '--out', out] : ['train', ARCH, ...FLAGS, '--out', out];
        code = await run(args, kills < 2 ? rng.int(1200, 3000) : undefined);
      }
      assert.ok(kills >= 1, 'the run was never killed: raise the kill delays');
      const got = readCheckpoint(join(out, 'checkpoint.ckpt'));
      assert.equal(got.meta.step, want.meta.step);
      for (const [name, t] of want.tensors) assert.deepEqual(Buffer.from(got.tensors.get(name)!.data.buffer), Buffer.from(t.data.buffer), `round ${round}: ${name} differs`);
    }
  });
});
