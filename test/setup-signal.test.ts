/**
 * Set-up (import, graph building, session creation; much of it synchronous) has nothing to save:
 * until training starts, SIGTERM and SIGINT end the process at once, even in the middle of a
 * long synchronous computation, where a JavaScript handler could only run after it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const TRAIN = join(import.meta.dirname, '..', 'cli', 'commands', 'train.ts');

/** Runs a script that installs the stop handler (armed or not), then computes for `seconds` synchronously; signals it once busy. */
async function signalDuringWork(armed: boolean, signal: NodeJS.Signals): Promise<{ ms: number; code: number | null; signal: NodeJS.Signals | null }> {
  const dir = mkdtempSync(join(tmpdir(), 'cnnlab-setup-signal-'));
  const script = join(dir, 'busy.ts');
  writeFileSync(
    script,
    `import { installStopHandler } from ${JSON.stringify(TRAIN)};
installStopHandler({ armed: ${armed} });
console.log('busy');
const end = Date.now() + 6000;
while (Date.now() < end) {}
`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  await new Promise((r) => setTimeout(r, 300));
  const sent = Date.now();
  child.kill(signal);
  return new Promise((resolve) => child.on('exit', (code, sig) => resolve({ ms: Date.now() - sent, code, signal: sig })));
}

describe('signals during set-up', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} before training starts ends a process busy in synchronous work at once`, async () => {
      const r = await signalDuringWork(false, signal);
      assert.equal(r.signal, signal);
      assert.ok(r.ms < 2000, `took ${r.ms} ms`);
    });
  }

  it('an armed handler (training under way) waits for the synchronous work to finish, then stops cleanly', async () => {
    const r = await signalDuringWork(true, 'SIGTERM');
    assert.equal(r.signal, null);
    assert.ok(r.ms > 3000, `ended after ${r.ms} ms, before the work finished`);
  });
});
