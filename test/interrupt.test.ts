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
    const rng = Rng.seeded(2024);
    const t0 = performance.now();
    await fit(cfg, { runDir: reference, resume: false, progress: false, log: () => {} });
    // Kill delays scale with how long training takes on this machine (plus the CLI's start-up).
    const training = performance.now() - t0;
    const delay = () => rng.int(800, 800 + Math.round(0.7 * training));
    const want = readCheckpoint(join(reference, 'checkpoint.ckpt'));
    let totalKills = 0;
    for (let round = 0; round < 3; round++) {
      const out = join(mkdtempSync(join(tmpdir(), 'cnnlab-kill-')), 'run');
      let kills = 0;
      let code = await run(['train', ARCH, ...FLAGS, '--out', out], delay());
      while (code !== 0) {
        kills++;
        assert.ok(kills < 10, 'the run never finished');
        const resume = existsSync(join(out, 'checkpoint.ckpt'));
        const args = resume ? ['train', '--resume', '--out', out] : ['train', ARCH, ...FLAGS, '--out', out];
        code = await run(args, kills < 2 ? delay() : undefined);
      }
      totalKills += kills;
      const got = readCheckpoint(join(out, 'checkpoint.ckpt'));
      assert.equal(got.meta.step, want.meta.step);
      for (const [name, t] of want.tensors) assert.deepEqual(Buffer.from(got.tensors.get(name)!.data.buffer), Buffer.from(t.data.buffer), `round ${round}: ${name} differs`);
    }
    assert.ok(totalKills >= 2, `only ${totalKills} kills landed before the runs finished`);
  });
});
