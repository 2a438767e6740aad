import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, it } from 'node:test';
import { Rng } from '../common/rng.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { readCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { resolveRunConfig } from '../training/config.ts';
import { fit, readMetrics } from '../training/fit.ts';
import { readScalars } from '../training/tensorboard.ts';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const ARCH = 'jhu-net:bn=bn-dropout';
const FLAGS = ['--limit-train', '5000', '--epochs', '2', '--batch', '50', '--steps-per-run', '2', '--augment', '--seed', '11', '--threads', '2', '--checkpoint-every', '0.3'];

const DISK_FULL = join(import.meta.dirname, 'helpers', 'disk-full.ts');

/** Runs the CLI to its end; `env` and a preload (the simulated full disk) optional. */
function runCli(args: string[], opts: { env?: Record<string, string>; preload?: string } = {}): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const pre = opts.preload ? ['--import', 'tsx', '--import', opts.preload] : [];
    const child = spawn(process.execPath, [...pre, CLI, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr, stdout }));
  });
}

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

describe('disk full', () => {
  it('a full disk at any moment ends the run with one line naming the file, leaves every file whole, and the run resumes', async () => {
    const flags = ['--limit-train', '1200', '--epochs', '2', '--batch', '100', '--steps-per-run', '3', '--augment', '--seed', '5', '--threads', '1', '--checkpoint-every', '0'];
    const root = mkdtempSync(join(tmpdir(), 'cnnlab-full-'));
    // The uninterrupted run lists its writes; each case fills the disk in the middle of one of them.
    const reference = join(root, 'reference');
    const report = join(root, 'writes.json');
    const ok = await runCli(['train', ARCH, ...flags, '--out', reference], { preload: DISK_FULL, env: { CNNLAB_TEST_DISK_DIR: reference, CNNLAB_TEST_DISK_REPORT: report } });
    assert.equal(ok.code, 0, ok.stderr);
    const writes = (JSON.parse(readFileSync(report, 'utf8')) as { path: string; start: number; bytes: number }[]).filter((w) => w.bytes > 1);
    const kind = (path: string) => basename(path).replace(/\.tmp-\d+$/, '').replace(/^events\.out\.tfevents\..*/, 'events');
    // The first write (config.json), and the last write of each kind: they fall in epoch 2, after a checkpoint exists.
    const cases = [...new Set([writes[0], ...new Map(writes.map((w) => [kind(w.path), w])).values()])];
    assert.deepEqual(new Set(cases.map((w) => kind(w.path))), new Set(['config.json', 'metrics.jsonl', 'events', 'last.onnx', 'best.onnx', 'checkpoint.ckpt']));
    const want = readCheckpoint(join(reference, 'checkpoint.ckpt'));
    for (const w of cases) {
      const out = join(root, `full-${w.start}`);
      const budget = String(w.start + Math.floor(w.bytes / 2));
      const r = await runCli(['train', ARCH, ...flags, '--out', out], { preload: DISK_FULL, env: { CNNLAB_TEST_DISK_DIR: out, CNNLAB_TEST_DISK_BYTES: budget } });
      assert.equal(r.code, 1, `budget ${budget}: exit ${r.code}, ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      const named = /^cnnlab: (.+): cannot write \(ENOSPC\)$/.exec(lines[0]);
      assert.ok(named && named[1].startsWith(`${out}/`) && kind(named[1]) === kind(w.path), `expected the ${kind(w.path)} write to fail: ${lines[0]}`);
      // Nothing half-done: no temporary files, no torn log lines, a readable checkpoint.
      const files = existsSync(out) ? readdirSync(out) : [];
      assert.deepEqual(files.filter((f) => f.includes('.tmp-')), [], `budget ${budget}`);
      if (files.includes('metrics.jsonl')) {
        const text = readFileSync(join(out, 'metrics.jsonl'), 'utf8');
        assert.ok(text === '' || text.endsWith('\n'), 'a torn metrics line');
        readMetrics(out);
      }
      const resume = files.includes('checkpoint.ckpt');
      if (resume) readCheckpoint(join(out, 'checkpoint.ckpt'));
      // Space freed: the run goes on from where it stopped and ends where the uninterrupted one did.
      const again = await runCli(resume ? ['train', '--resume', '--out', out] : ['train', ARCH, ...flags, '--out', out]);
      assert.equal(again.code, 0, again.stderr);
      const got = readCheckpoint(join(out, 'checkpoint.ckpt'));
      assert.equal(got.meta.step, want.meta.step);
      for (const [name, t] of want.tensors) assert.deepEqual(Buffer.from(got.tensors.get(name)!.data.buffer), Buffer.from(t.data.buffer), `budget ${budget}: ${name} differs`);
      // The TensorBoard log holds each epoch once.
      const events = readdirSync(out).filter((f) => f.startsWith('events.out.tfevents.'));
      assert.equal(events.length, 1);
      const steps = readScalars(readFileSync(join(out, events[0]))).filter((e) => e.tag === 'accuracy/test').map((e) => e.step);
      assert.deepEqual(steps, readMetrics(reference).map((m) => m.step), `budget ${budget}: events`);
    }
  });
});

describe('a sweep killed mid-way', () => {
  it('resumes without redoing finished trials', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'cnnlab-sweepkill-')), 'sweep');
    const args = ['sweep', 'partA', '--vary', 'lr=0.001,0.002,0.003', '--limit-train', '1000', '--epochs', '1', '--batch', '100', '--threads', '1', '--no-report', '--out', dir];
    const status = (id: string) => join(dir, id, 'status.json');
    const first = 'lr=0.001';
    // Kill as soon as the first trial has finished.
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
      const timer = setInterval(() => {
        if (existsSync(status(first))) child.kill('SIGKILL');
      }, 20);
      child.on('exit', (c) => {
        clearInterval(timer);
        resolve(c);
      });
    });
    assert.notEqual(code, 0, 'the sweep finished before it could be killed');
    const before = statSync(status(first)).mtimeMs;
    const metricsBefore = readFileSync(join(dir, first, 'metrics.jsonl'), 'utf8');
    const r = await runCli(args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\[1\/3\] lr=0\.001: done, skipped/);
    assert.equal(statSync(status(first)).mtimeMs, before, 'the finished trial ran again');
    assert.equal(readFileSync(join(dir, first, 'metrics.jsonl'), 'utf8'), metricsBefore);
    const manifest = JSON.parse(readFileSync(join(dir, 'sweep.json'), 'utf8')) as { trials: { id: string; status: string }[] };
    assert.deepEqual(manifest.trials.map((t) => t.status), ['done', 'done', 'done']);
    for (const t of manifest.trials) assert.equal(readMetrics(join(dir, t.id)).length, 1, t.id);
  });
});

/** Starts a training run and sends `signals` once its first checkpoint exists; resolves with the exit code and how long it took to exit. */
function signalled(args: string[], out: string, signals: NodeJS.Signals[]): Promise<{ code: number | null; stdout: string; afterSignalMs: number }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.resume();
    let sentAt = 0;
    const poll = setInterval(() => {
      if (!existsSync(join(out, 'checkpoint.ckpt'))) return;
      clearInterval(poll);
      sentAt = performance.now();
      // Spaced: the kernel merges a signal still pending with a second one of the same kind.
      signals.forEach((s, i) => setTimeout(() => child.kill(s), 150 * i));
    }, 20);
    child.on('exit', (code) => {
      clearInterval(poll);
      resolve({ code, stdout, afterSignalMs: performance.now() - sentAt });
    });
  });
}

describe('SIGTERM and SIGINT', () => {
  const flags = ['--limit-train', '3000', '--epochs', '2', '--batch', '50', '--steps-per-run', '2', '--augment', '--seed', '5', '--threads', '2', '--checkpoint-every', '0.2'];

  it('each finishes the chunk, saves, exits 143 (SIGTERM) or 130 (SIGINT), and the run resumes to the uninterrupted parameters', async () => {
    const reference = mkdtempSync(join(tmpdir(), 'cnnlab-ref-'));
    const cfg = resolveRunConfig(await loadArchitecture(ARCH), { 'limit-train': 3000, epochs: 2, batch: 50, 'steps-per-run': 2, augment: true, seed: 5, threads: 2, 'checkpoint-every': 0.2 });
    await fit(cfg, { runDir: reference, resume: false, progress: false, log: () => {} });
    const want = readCheckpoint(join(reference, 'checkpoint.ckpt'));
    for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
      const out = join(mkdtempSync(join(tmpdir(), 'cnnlab-signal-')), 'run');
      const r = await signalled(['train', ARCH, ...flags, '--out', out], out, [signal]);
      assert.equal(r.code, code, `${signal}: ${r.stdout}`);
      assert.match(r.stdout, /stopped at step \d+ \(epoch \d, \d+\/60\); checkpoint saved/);
      // One chunk is 2 steps of 50 images: well under a few seconds even on a slow machine.
      assert.ok(r.afterSignalMs < 10_000, `${signal}: exited ${r.afterSignalMs.toFixed(0)} ms after the signal`);
      assert.equal((await runCli(['train', '--resume', '--out', out])).code, 0);
      const got = readCheckpoint(join(out, 'checkpoint.ckpt'));
      for (const [name, t] of want.tensors) assert.deepEqual(Buffer.from(got.tensors.get(name)!.data.buffer), Buffer.from(t.data.buffer), `${signal}: ${name}`);
    }
  });

  it('a second signal exits at once, leaving the last checkpoint whole', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'cnnlab-signal-')), 'run');
    // Chunks of 30 steps: the second signal lands while the first chunk is still running.
    const r = await signalled(['train', ARCH, ...flags, '--steps-per-run', '30', '--out', out], out, ['SIGTERM', 'SIGTERM']);
    assert.equal(r.code, 143);
    assert.doesNotMatch(r.stdout, /stopped at step/);
    assert.ok(Number(readCheckpoint(join(out, 'checkpoint.ckpt')).meta.step) > 0);
  });
});

/**
 * Starts a training run and sends `signals` (50 ms apart) as soon as it has trained a chunk, before
 * any checkpoint exists: its TensorBoard log grows by each chunk's losses.
 */
function signalledEarly(args: string[], out: string, signals: NodeJS.Signals[]): Promise<{ code: number | null; stdout: string; stderr: string; checkpointBefore: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let opened = -1;
    let checkpointBefore = false;
    const poll = setInterval(() => {
      const events = existsSync(out) ? readdirSync(out).find((f) => f.startsWith('events.out.tfevents.')) : undefined;
      if (!events) return;
      const size = statSync(join(out, events)).size;
      if (opened < 0) opened = size;
      if (size <= opened) return;
      clearInterval(poll);
      checkpointBefore = existsSync(join(out, 'checkpoint.ckpt'));
      signals.forEach((s, i) => setTimeout(() => child.kill(s), 50 * i));
    }, 5);
    child.on('exit', (code) => {
      clearInterval(poll);
      resolve({ code, stdout, stderr, checkpointBefore });
    });
  });
}

describe('a signal in the first minute, before any periodic checkpoint', () => {
  // 60 steps an epoch; no periodic checkpoint within the test (600 s).
  const flags = ['--limit-train', '1500', '--epochs', '2', '--batch', '25', '--steps-per-run', '2', '--seed', '9', '--threads', '2', '--checkpoint-every', '600'];

  it('ends with a checkpoint of the steps done, signalled once or twice at once (a Ctrl-C under npx arrives twice), and --resume ends where an uninterrupted run does', async () => {
    const reference = mkdtempSync(join(tmpdir(), 'cnnlab-ref-'));
    const cfg = resolveRunConfig(await loadArchitecture('partA'), { 'limit-train': 1500, epochs: 2, batch: 25, 'steps-per-run': 2, seed: 9, threads: 2, 'checkpoint-every': 600 });
    await fit(cfg, { runDir: reference, resume: false, progress: false, log: () => {} });
    const want = readCheckpoint(join(reference, 'checkpoint.ckpt'));
    for (const [signals, code] of [[['SIGINT'], 130], [['SIGTERM', 'SIGTERM'], 143], [['SIGINT', 'SIGINT'], 130]] as const) {
      const what = signals.join(' + ');
      const out = join(mkdtempSync(join(tmpdir(), 'cnnlab-early-')), 'run');
      const r = await signalledEarly(['train', 'partA', ...flags, '--out', out], out, [...signals]);
      assert.equal(r.checkpointBefore, false, `${what}: a checkpoint existed before the signal; the run was too quick to test this`);
      assert.equal(r.code, code, `${what}: ${r.stdout}${r.stderr}`);
      const step = Number(readCheckpoint(join(out, 'checkpoint.ckpt')).meta.step);
      assert.ok(step > 0, `${what}: checkpoint at step ${step}`);
      // Said once, on stdout (the chunk finished) or stderr (the second signal saved the steps before it).
      const said = `${r.stdout}\n${r.stderr}`;
      assert.match(said, new RegExp(`(stopped at|saved a checkpoint at) step ${step} \\(epoch \\d, \\d+/60\\)`), `${what}: ${said}`);
      const resumed = await runCli(['train', '--resume', '--out', out]);
      assert.equal(resumed.code, 0, `${what}: ${resumed.stderr}`);
      assert.deepEqual(readMetrics(out).map((m) => m.epoch), [1, 2], what);
      const got = readCheckpoint(join(out, 'checkpoint.ckpt'));
      assert.equal(got.meta.step, want.meta.step);
      for (const [name, t] of want.tensors) assert.deepEqual(Buffer.from(got.tensors.get(name)!.data.buffer), Buffer.from(t.data.buffer), `${what}: ${name} differs after resume`);
    }
  });
});
