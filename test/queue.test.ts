/**
 * Sweeps and searches on a queue (training/queue*.ts) against a real redis-server (Debian's
 * package; scripts/setup.sh installs it), started on a free loopback port and stopped after:
 * a coordinator and worker processes on this machine, one of them killed with SIGKILL mid-trial.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeModel } from '../graph-builder/graph/onnx.ts';
import { parseQueueAddress } from '../training/queue.ts';
import { readMetrics } from '../training/run-folder.ts';
import { readSweepManifest, type TrialRecord } from '../training/sweep.ts';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const redisMissing = spawnSync('redis-server', ['--version']).error ? 'redis-server is not installed (scripts/setup.sh installs it)' : undefined;

/** A CLI process whose output is kept. */
interface Proc {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

const children: ChildProcess[] = [];

function start(cwd: string, ...args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let text = '';
  child.stdout!.on('data', (d) => (text += d));
  child.stderr!.on('data', (d) => (text += d));
  return { child, out: () => text, exited: new Promise((r) => child.on('exit', (code) => r(code))) };
}

async function finished(p: Proc): Promise<string> {
  const code = await p.exited;
  assert.equal(code, 0, p.out());
  return p.out();
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const until = async (what: string, ok: () => boolean, seconds = 120) => {
  const end = Date.now() + seconds * 1000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

// 3 epochs of 1,500 images: about 1 s an epoch here, long enough to kill a worker mid-trial.
const RECIPE = ['--limit-train', '1500', '--batch', '100', '--epochs', '3', '--seed', '1', '--no-report'];
const GRID = ['sweep', 'baseline', '--vary', 'lr=0.01,0.03', ...RECIPE];
const workerArgs = (queue: string) => ['worker', '--queue', queue, '--stall-timeout', '3', '--until-done'];

/** What a trial computed: its record's figures, its epochs without their timings, its final weights (last.onnx's metadata names the run's folder). */
function computed(r: TrialRecord, root: string) {
  const run = resolve(root, r.run);
  const epochs = readMetrics(run).map(({ seconds, imagesPerSecond, ...m }) => m);
  const hash = createHash('sha256');
  for (const t of decodeModel(readFileSync(join(run, 'last.onnx'))).initializers) hash.update(t.name).update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  const last = hash.digest('hex');
  return { id: r.id, status: r.status, best: r.best, validation: r.validation, parameters: r.parameters, epochs, last };
}

const startLines = (logs: string, id: string) => logs.split('\n').filter((l) => l.startsWith('[') && l.includes(`] ${id}`) && !l.includes(':'));

describe('sweeps and searches on a Redis queue', { skip: redisMissing }, () => {
  let redis: ChildProcess;
  let url: string;
  let local: ReturnType<typeof computed>[];
  const root = mkdtempSync(join(tmpdir(), 'cnnlab-queue-'));

  before(async () => {
    const port = await freePort();
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    url = `redis://127.0.0.1:${port}`;
    await until('redis-server', () => spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG', 20);
    await finished(start(root, ...GRID, '--out', 'local'));
    local = readSweepManifest(join(root, 'local', 'sweep.json')).trials.map((t) => computed(t, root));
  });

  after(() => {
    for (const c of children) c.kill('SIGKILL');
    redis?.kill('SIGKILL');
  });

  it('Ctrl-C on the coordinator leaves the queue as it was; three workers and the same command again finish the grid with each trial run once, equal to the local sweep', async () => {
    const queue = `${url}/grid`;
    const first = start(root, ...GRID, '--out', 'queued', '--queue', queue);
    await until('the trials enqueued', () => first.out().includes('enqueued 2 trials'));
    first.child.kill('SIGINT');
    assert.equal(await first.exited, 130, first.out());
    const status = start(root, 'sweep', '--queue', queue, '--status');
    assert.match(await finished(status), /queued {3}2: lr=0\.01, lr=0\.03\n {2}running {2}0\n {2}done {5}0/);
    const workers = [1, 2, 3].map(() => start(root, ...workerArgs(queue)));
    const again = await finished(start(root, ...GRID, '--out', 'queued', '--queue', queue));
    assert.match(again, /continuing 2 trials/);
    assert.match(again, /2 done, 0 diverged, 0 invalid/);
    const logs = (await Promise.all(workers.map(finished))).join('\n');
    for (const id of ['lr=0.01', 'lr=0.03']) assert.equal(startLines(logs, id).length, 1, `${id} started once:\n${logs}`);
    const queued = readSweepManifest(join(root, 'queued', 'sweep.json')).trials;
    assert.deepEqual(queued.map((t) => computed(t, root)), local);
    assert.ok(queued.every((t) => /:\d+$/.test(t.worker ?? '') && !t.resumed));
  });

  it('a worker killed with SIGKILL mid-trial: another takes its trial after the stall timeout and resumes it from the checkpoint, bit for bit, once; the record says so', async () => {
    const queue = `${url}/killed`;
    const coordinator = start(root, ...GRID, '--out', 'killed', '--queue', queue);
    const victim = start(root, ...workerArgs(queue));
    const run = join(root, 'killed', 'lr=0.01');
    await until('a checkpoint of the first trial', () => existsSync(join(run, 'checkpoint.ckpt')));
    assert.ok(!existsSync(join(run, 'status.json')), 'killed before the trial finished');
    victim.child.kill('SIGKILL');
    await victim.exited;
    const rescuer = start(root, ...workerArgs(queue));
    const out = await finished(coordinator);
    assert.match(out, /lr=0\.01: its worker was lost; back in the queue/);
    assert.match(await finished(rescuer), /\[1\/2\] lr=0\.01 \(resumed from its checkpoint\)/);
    const trials = readSweepManifest(join(root, 'killed', 'sweep.json')).trials;
    assert.deepEqual(trials.map((t) => computed(t, root)), local);
    assert.equal(trials[0].resumed, true);
    assert.equal(trials[0].worker, `${trials[0].worker!.split(':')[0]}:${rescuer.child.pid}`);
    assert.match(out, /\[\d\/2\] lr=0\.01: done, .*resumed from its checkpoint/);
  });

  it('a search of 5 trials with three workers ends with 5 distinct points, each run once, and the local search\'s best-trial line', async () => {
    const queue = `${url}/search`;
    const workers = [1, 2, 3].map(() => start(root, ...workerArgs(queue)));
    const args = ['search', 'baseline', '--space', 'lr=0.002|0.005|0.01|0.02|0.03|0.05|0.1', '--trials', '5', ...RECIPE.filter((f) => f !== '--no-report'), '--epochs', '1', '--out', 'search', '--queue', queue];
    const out = await finished(start(root, ...args));
    assert.match(out, /\nbest: validation \d+\.\d\d% \(test \d+\.\d\d%\) with lr=0\.\d+ \([\d,]+ parameters, run .*search\/00\d-lr=0\.\d+\)/);
    const trials = readSweepManifest(join(root, 'search', 'sweep.json')).trials;
    assert.equal(trials.length, 5);
    assert.equal(new Set(trials.map((t) => t.settings.lr)).size, 5, 'distinct points');
    const logs = (await Promise.all(workers.map(finished))).join('\n');
    for (const t of trials) assert.equal(startLines(logs, t.id).length, 1, `${t.id} started once:\n${logs}`);
  });

  it('a queue holding another recipe is refused in one line naming what differs, exit 2', async () => {
    const r = spawnSync(process.execPath, [CLI, ...GRID, '--epochs', '4', '--out', 'queued', '--queue', `${url}/grid`], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `cnnlab: --queue ${url}/grid: the queue holds another sweep: epochs=3 (asked: epochs=4); use another queue name\n`);
  });
});

describe('queue addresses', () => {
  it('--queue takes redis://HOST:PORT/NAME; anything else, or a server that does not answer, is one line, exit 2', () => {
    assert.deepEqual(parseQueueAddress('redis://10.0.0.5:6379/mnist-search'), { server: 'redis://10.0.0.5:6379', name: 'mnist-search', text: 'redis://10.0.0.5:6379/mnist-search' });
    assert.deepEqual(parseQueueAddress('rediss://u:secret@h/q1'), { server: 'rediss://u:secret@h:6379', name: 'q1', text: 'rediss://u@h:6379/q1' });
    for (const [spec, why] of [['http://h:1/q', 'http: is not redis: or rediss:'], ['redis://h:1', 'no queue name after the port'], ['redis://h:1/a/b', 'the queue name a/b may hold']]) {
      assert.throws(() => parseQueueAddress(spec), (e: Error) => e.message.startsWith(`--queue ${spec}: ${why}`) && e.message.endsWith('expected redis://HOST:PORT/NAME, e.g. redis://10.0.0.5:6379/mnist-search'));
    }
    const r = spawnSync(process.execPath, [CLI, 'worker', '--queue', 'redis://127.0.0.1:1/q'], { encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^cnnlab: --queue redis:\/\/127\.0\.0\.1:1\/q: cannot reach Redis \(connect ECONNREFUSED 127\.0\.0\.1:1\)\n$/);
  });
});
