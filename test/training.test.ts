import assert from 'node:assert/strict';
import { UsageError } from '../common/errors.ts';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { PRESET_NAMES, PRESETS } from '../graph-builder/dsl/presets.ts';
import { readCheckpoint, writeCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { createRuntime, cudaFailure } from '../runtime/ort.ts';
import { resolveRunConfig } from '../training/config.ts';
import { TRAIN_FLAGS, type TrainFlags } from '../training/flags.ts';
import { fit } from '../training/fit.ts';
import { hyperAt, SCHEDULE_NAMES, SCHEDULES, type ScheduleSettings } from '../training/schedule.ts';
import { readScalars } from '../training/tensorboard.ts';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'cnnlab-run-'));
}

async function config(arch: string, flags: TrainFlags) {
  return resolveRunConfig(await loadArchitecture(arch), { threads: 2, ...flags });
}

const quiet = { progress: false, log: () => {} };

describe('fit', () => {
  it('a short run on a 2k-image MNIST slice passes 90% test accuracy and writes a complete run folder', async () => {
    const dir = tmp();
    const cfg = await config('partA', { 'limit-train': 2000, epochs: 3, batch: 50, shuffle: true });
    const result = await fit(cfg, { runDir: dir, resume: false, ...quiet });
    const last = result.epochs[result.epochs.length - 1];
    assert.ok(last.testAcc > 0.9, `test accuracy ${last.testAcc}`);
    for (const f of ['config.json', 'metrics.jsonl', 'checkpoint.ckpt', 'best.onnx', 'last.onnx']) assert.ok(existsSync(join(dir, f)), f);
    const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(metrics.map((m) => m.epoch), [1, 2, 3]);
    const events = readdirSync(dir).find((f) => f.startsWith('events.out.tfevents.'))!;
    const scalars = readScalars(readFileSync(join(dir, events)));
    assert.deepEqual(scalars.filter((s) => s.tag === 'accuracy/test').map((s) => s.value.toFixed(4)), metrics.map((m) => m.testAcc.toFixed(4)));
    const saved = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.equal(saved.train.optimizer.name, 'adam');
    assert.equal(readCheckpoint(join(dir, 'checkpoint.ckpt')).meta.step, 3 * 40);
  });

  it('an interrupted run resumes to the same parameters as an uninterrupted one', async () => {
    // BatchNorm, Dropout, augmentation, momentum, a schedule and a short last batch: everything random or stateful.
    const flags: TrainFlags = { 'limit-train': 730, epochs: 2, batch: 100, 'steps-per-run': 3, augment: true, schedule: 'onecycle', seed: 7 };
    const cfg = await config('jhu-net:bn=bn-dropout', flags);
    const whole = tmp();
    await fit(cfg, { runDir: whole, resume: false, ...quiet });
    const parts = tmp();
    let checks = 0;
    const stop = {
      get requested() {
        return ++checks === 3; // after the 3rd chunk: step 7, before epoch 1's short last batch
      },
    };
    const first = await fit(cfg, { runDir: parts, resume: false, ...quiet, stop });
    assert.equal(first.interrupted, true);
    assert.equal(readCheckpoint(join(parts, 'checkpoint.ckpt')).meta.step, 7);
    const second = await fit(cfg, { runDir: parts, resume: true, ...quiet });
    assert.equal(second.interrupted, false);
    const a = readCheckpoint(join(whole, 'checkpoint.ckpt'));
    const b = readCheckpoint(join(parts, 'checkpoint.ckpt'));
    assert.equal(a.meta.step, 16);
    assert.equal(b.meta.step, 16);
    for (const [name, t] of a.tensors) {
      assert.deepEqual(Buffer.from(b.tensors.get(name)!.data.buffer), Buffer.from(t.data.buffer), `${name} differs after resume`);
    }
    // The interrupted epoch's train loss and accuracy cover the whole epoch (its sums travel in the checkpoint).
    const metrics = (d: string) => readFileSync(join(d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((m) => [m.trainLoss, m.trainAcc, m.testAcc]);
    assert.deepEqual(metrics(parts), metrics(whole));
  });

  it('stops on a NaN loss with a clear message and keeps the last good checkpoint', async () => {
    const dir = tmp();
    const cfg = await config('partA', { 'limit-train': 3000, epochs: 2, batch: 100, opt: 'sgd', lr: 10, 'steps-per-run': 5 });
    await assert.rejects(fit(cfg, { runDir: dir, resume: false, ...quiet }), /training diverged at step \d+ \(epoch 1\): the loss is (NaN|Infinity) with lr 10\.0; lower --lr/);
    assert.ok(!existsSync(join(dir, 'checkpoint.ckpt')) || Number.isFinite(Number(readCheckpoint(join(dir, 'checkpoint.ckpt')).meta.step)));
  });
});

describe('transfer', () => {
  it('prints zero-shot, fine-tuned and from-scratch rows in both directions; --freeze features keeps the convs', async () => {
    const src = tmp();
    const cfg = await config('jhu-net', { dataset: 'fashion-mnist', 'limit-train': 1500, epochs: 1, batch: 50, opt: 'adam', lr: 1e-3 });
    await fit(cfg, { runDir: src, resume: false, ...quiet });
    const out = spawnSync(process.execPath, [CLI, 'transfer', '--from', src, '--to', 'mnist', '--limit-train', '1000', '--finetune-epochs', '1', '--freeze', 'features'], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /\| zero-shot: .* \(trained on fashion-mnist\) on mnist \| \d+\.\d\d% \|/);
    assert.match(out.stdout, /\| fine-tuned: lr x0\.05 \(0\.00005\), features frozen, 1 epoch \| \d+\.\d\d% \| \d\.\d{4} \| 20 \|/);
    assert.match(out.stdout, /\| from scratch: lr 0\.001, 1 epoch \| \d+\.\d\d% \| \d\.\d{4} \| 20 \|/);
    const before = readCheckpoint(join(src, 'checkpoint.ckpt'));
    const after = readCheckpoint(join(`${src}-to-mnist`, 'finetune', 'checkpoint.ckpt'));
    assert.deepEqual(Array.from(after.tensors.get('conv1.weight')!.data as Float32Array), Array.from(before.tensors.get('conv1.weight')!.data as Float32Array));
    assert.notDeepEqual(Array.from(after.tensors.get('fc2.weight')!.data as Float32Array), Array.from(before.tensors.get('fc2.weight')!.data as Float32Array));
    // And back: MNIST -> Fashion-MNIST from the fine-tuned run.
    const back = spawnSync(process.execPath, [CLI, 'transfer', '--from', join(`${src}-to-mnist`, 'finetune'), '--to', 'fashion-mnist', '--limit-train', '500', '--finetune-epochs', '1'], { encoding: 'utf8' });
    assert.equal(back.status, 0, back.stderr);
    assert.equal(back.stdout.split('\n').filter((l) => /^\| (zero-shot|fine-tuned|from scratch)/.test(l)).length, 3);
  });
});

describe('schedules', () => {
  const base: ScheduleSettings = {
    name: 'onecycle',
    lr: 0.017,
    momentum: 0.9,
    totalSteps: 1000,
    stepsPerEpoch: 100,
    stepEpochs: 3,
    gamma: 0.1,
    onecycle: { pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, momentumRange: [0.85, 0.95] },
  };

  it('OneCycle follows PyTorch: warm-up to max_lr at pct_start, anneal to initial/final_div, momentum inverted', () => {
    assert.ok(Math.abs(hyperAt(base, 0).lr - 0.017 / 25) < 1e-12);
    assert.ok(Math.abs(hyperAt(base, 0).momentum - 0.95) < 1e-12);
    assert.ok(Math.abs(hyperAt(base, 299).lr - 0.017) < 1e-12);
    assert.ok(Math.abs(hyperAt(base, 299).momentum - 0.85) < 1e-12);
    assert.ok(Math.abs(hyperAt(base, 999).lr - 0.017 / 25 / 1e4) < 1e-12);
    assert.ok(Math.abs(hyperAt(base, 999).momentum - 0.95) < 1e-12);
    // Half-way through the warm-up the cosine is at its midpoint.
    assert.ok(Math.abs(hyperAt(base, 149.5).lr - (0.017 + 0.017 / 25) / 2) < 1e-9);
  });

  it('step and cosine', () => {
    const step = { ...base, name: 'step' as const };
    assert.equal(hyperAt(step, 299).lr, 0.017);
    assert.ok(Math.abs(hyperAt(step, 300).lr - 0.0017) < 1e-12);
    const cos = { ...base, name: 'cosine' as const };
    assert.ok(Math.abs(hyperAt(cos, 500).lr - 0.0085) < 1e-12);
    assert.equal(hyperAt({ ...base, name: 'constant' }, 700).lr, 0.017);
  });

  it('the table names every preset’s schedule, --schedule offers exactly its names, and an unknown recipe schedule is one line', async () => {
    for (const name of PRESET_NAMES) assert.ok(PRESETS[name].recipe.schedule in SCHEDULES, `${name}: ${PRESETS[name].recipe.schedule}`);
    assert.deepEqual([...TRAIN_FLAGS.schedule.choices], SCHEDULE_NAMES);
    assert.equal(TRAIN_FLAGS.gamma.describe, 'step schedule: decay factor (default 0.1)');
    const arch = await loadArchitecture('partA');
    assert.throws(() => resolveRunConfig({ ...arch, recipe: { ...arch.recipe, schedule: 'warmup' } }, {}), (e: Error) => e instanceof UsageError && e.message === `${arch.id}: recipe schedule: expected one of constant, step, onecycle, cosine, got 'warmup'`);
  });
});

/** Whether onnxruntime-node's CUDA provider loads here (a GPU machine after `npm run install-cuda`). */
const CUDA_LOADS = await createRuntime({ ep: 'cuda' }).then(
  () => true,
  () => false,
);

describe('the train command', () => {
  it('--ep cuda without CUDA: the install message in one short line, exit 1, and no run folder', { skip: CUDA_LOADS && 'the CUDA provider loads on this machine' }, () => {
    // In a fresh folder, without --out (runs/partA-mnist), and with an --out two levels deep: nothing may stay behind.
    const cwd = tmp();
    const deep = join(tmp(), 'a', 'run');
    for (const out of [[], ['--out', deep]]) {
      const r = spawnSync(process.execPath, [CLI, 'train', 'partA', '--ep', 'cuda', '--epochs', '1', '--limit-train', '100', ...out], { encoding: 'utf8', cwd });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^cnnlab: --ep cuda: the CUDA execution provider is not installed: run `npm run install-cuda` once \(needs an NVIDIA GPU with CUDA 12 and cuDNN 9\), or use --ep cpu \(libonnxruntime_providers_cuda\.so not in \S+\)\n$/);
      // The library folder named once, not a list of full library paths.
      assert.equal(r.stderr.split('napi-v6').length, 2, r.stderr);
      assert.ok(r.stderr.length < 300, `${r.stderr.length} characters: ${r.stderr}`);
    }
    assert.deepEqual(readdirSync(cwd), [], 'a run folder was left behind');
    assert.ok(!existsSync(join(deep, '..')), `${join(deep, '..')} was left behind`);
  });

  it('a CUDA provider that fails to load names its library folder once', () => {
    const dir = '/opt/node_modules/onnxruntime-node/bin/napi-v6/linux/x64';
    const message = `Failed to load library ${dir}/libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file: No such file or directory\n at ${dir}/onnxruntime_binding.node`;
    assert.equal(cudaFailure(message, dir), `Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file: No such file or directory (in ${dir})`);
    assert.equal(cudaFailure('CUDA failure 100: no CUDA-capable device is detected', dir), 'CUDA failure 100: no CUDA-capable device is detected');
  });

  it('headers count in the right number: 1 epoch, 2 epochs', () => {
    const out = spawnSync(process.execPath, [CLI, 'train', 'partA', '--epochs', '1', '--limit-train', '100', '--batch', '100', '--val-split', '0', '--out', join(tmp(), 'run')], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /^cnnlab train partA on mnist: 1 epoch, batch 100,/m);
  });

  it('rejects bad flags with one line naming the flag, exit 2', () => {
    const cases: [string[], RegExp][] = [
      [['--epochs', '-1'], /--epochs: expected a whole number in 1\.\.10000, got -1/],
      [['--batch', '0'], /--batch: expected a whole number in 1\.\.65536, got 0/],
      [['--lr', 'fast'], /^cnnlab: --lr: expected a number in 0\.\.10, got 'fast'$/m],
      [['--lr=fast'], /^cnnlab: --lr: expected a number in 0\.\.10, got 'fast'$/m],
      [['--epochs', '2x'], /^cnnlab: --epochs: expected a whole number in 1\.\.10000, got '2x'$/m],
      [['--opt', 'lion'], /^cnnlab: --opt: expected one of sgd, adam, adamw, rmsprop, got "lion"$/m],
      [['--dataset', 'cifar'], /^cnnlab: --dataset: expected one of mnist, fashion-mnist, kmnist, emnist-digits, emnist-letters, got "cifar"$/m],
      [['--epochs'], /^cnnlab: --epochs: expected a value after it$/m],
      [['--lr', '--batch', '5'], /^cnnlab: --lr: expected a value after it$/m],
      [['--schedule', 'linear'], /--schedule: expected one of .*constant.*onecycle/],
    ];
    const unknown = spawnSync(process.execPath, [CLI, 'train', 'partQ', '--out', join(tmp(), 'run')], { encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /^cnnlab: unknown architecture 'partQ'; expected one of baseline, partA, .*fashion-best/);
    for (const [flags, pattern] of cases) {
      const run = join(tmp(), 'run');
      const out = spawnSync(process.execPath, [CLI, 'train', 'partA', ...flags, '--out', run], { encoding: 'utf8' });
      assert.equal(out.status, 2, `${flags.join(' ')}: ${out.stderr}`);
      assert.ok(!existsSync(run), `${flags.join(' ')}: wrote ${run}`);
      assert.match(out.stderr, pattern);
      assert.equal(out.stderr.trim().split('\n').length, 1, out.stderr);
    }
  });
});

describe('run folders the user damaged', () => {
  it('an unwritable --out and a corrupt config.json give one line', async () => {
    const ro = spawnSync(process.execPath, [CLI, 'train', 'partA', '--limit-train', '100', '--out', '/proc/cnnlab-run'], { encoding: 'utf8' });
    assert.equal(ro.status, 2, ro.stderr);
    assert.match(ro.stderr, /^cnnlab: --out \/proc\/cnnlab-run: cannot create or write the run folder \(E[A-Z]+\)\n$/);
    const dir = tmp();
    const cfg = await config('jhu-net', { 'limit-train': 300, epochs: 1, batch: 100 });
    await fit(cfg, { runDir: dir, resume: false, ...quiet });
    const saved = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    for (const [content, pattern] of [
      ['{ broken', /config\.json: not valid JSON/],
      ['[1, 2]', /config\.json: not a cnnlab run config/],
      [JSON.stringify({ ...saved, flags: { ...saved.flags, batch: -5 } }), /config\.json: --batch: expected a whole number in 1\.\.65536, got -5/],
      [' '.repeat(2 * 1024 * 1024), /config\.json: 2097152 bytes, larger than any file of its kind \(limit 1048576\)/],
    ] as const) {
      writeFileSync(join(dir, 'config.json'), content);
      const out = spawnSync(process.execPath, [CLI, 'train', '--resume', '--out', dir], { encoding: 'utf8' });
      assert.notEqual(out.status, 0);
      assert.match(out.stderr, pattern);
      assert.equal(out.stderr.trim().split('\n').length, 1, out.stderr);
    }
  });
});

describe('checkpoints', () => {
  it('survive a kill during writing: the old or the new one, never a broken one', async () => {
    const dir = tmp();
    const path = join(dir, 'c.ckpt');
    const big = (v: number) => ({ meta: { v }, tensors: new Map([['w', { dtype: 'float32' as const, dims: [2_000_000], data: new Float32Array(2_000_000).fill(v) }]]) });
    writeCheckpoint(path, big(0));
    const writer = `
      import { writeCheckpoint } from ${JSON.stringify(join(import.meta.dirname, '..', 'graph-builder', 'artifacts', 'checkpoint.ts'))};
      for (let v = 1; ; v++) writeCheckpoint(${JSON.stringify(path)}, { meta: { v }, tensors: new Map([['w', { dtype: 'float32', dims: [2000000], data: new Float32Array(2000000).fill(v) }]]) });
    `;
    for (let round = 0; round < 5; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', writer], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 300 + round * 137));
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      const c = readCheckpoint(path);
      const v = c.meta.v as number;
      const w = c.tensors.get('w')!.data as Float32Array;
      assert.ok(w[0] === v && w[w.length - 1] === v, `round ${round}: a torn checkpoint (meta ${v}, data ${w[0]}..${w[w.length - 1]})`);
    }
  });

  it('rejects truncated and corrupted files with one line', () => {
    const dir = tmp();
    const path = join(dir, 'c.ckpt');
    writeCheckpoint(path, { meta: { step: 3 }, tensors: new Map([['w', { dtype: 'float32', dims: [4], data: Float32Array.of(1, 2, 3, 4) }]]) });
    const bytes = readFileSync(path);
    const c = readCheckpoint(path);
    assert.deepEqual(Array.from(c.tensors.get('w')!.data as Float32Array), [1, 2, 3, 4]);
    const check = (b: Uint8Array, pattern: RegExp) => {
      const p = join(dir, `bad-${Math.random()}.ckpt`);
      writeFileSync(p, b);
      assert.throws(() => readCheckpoint(p), pattern);
    };
    check(bytes.subarray(0, bytes.length - 10), /not a valid cnnlab checkpoint \(checksum mismatch/);
    const flipped = Uint8Array.from(bytes);
    flipped[40] ^= 0xff;
    check(flipped, /checksum mismatch/);
    check(Buffer.from('hello'), /too short/);
    const wrongMagic = Uint8Array.from(bytes);
    wrongMagic[0] = 0x41;
    check(wrongMagic, /wrong magic/);
  });
});

describe('sweeps and reports', () => {
  it('a 2x2 sweep creates four runs and a report; a re-run skips them; shards cover the grid once', async () => {
    const { grid, parseAxis, shard, runSweep } = await import('../training/sweep.ts');
    const { collectEntries, writeReport } = await import('../training/report.ts');
    const trials = grid([parseAxis('lr=0.01,10'), parseAxis('batch=50,100')]);
    assert.deepEqual(trials.map((t) => t.id), ['lr=0.01,batch=50', 'lr=0.01,batch=100', 'lr=10,batch=50', 'lr=10,batch=100']);
    const covered = [1, 2, 3].flatMap((i) => shard(trials, `${i}/3`).map((t) => t.id)).sort();
    assert.deepEqual(covered, trials.map((t) => t.id).sort());
    assert.throws(() => shard(trials, '4/3'), /--shard 4\/3: expected i\/n/);
    const dir = tmp();
    const base = { 'limit-train': 600, epochs: 1, opt: 'sgd', dataset: 'fashion-mnist', threads: 2 };
    const lines: string[] = [];
    const m = await runSweep({ arch: 'partA', base, trials, dir, fit: quiet, log: (l) => lines.push(l) });
    assert.deepEqual(m.trials.map((t) => t.status), ['done', 'done', 'diverged', 'diverged']);
    for (const t of trials) assert.ok(existsSync(join(dir, t.id, 'status.json')), t.id);
    assert.ok(existsSync(join(dir, 'lr=0.01,batch=100', 'metrics.jsonl')));
    const again: string[] = [];
    await runSweep({ arch: 'partA', base, trials, dir, fit: quiet, log: (l) => again.push(l) });
    assert.equal(again.filter((l) => /skipped \(same recipe\)$/.test(l)).length, 4);
    const r = await writeReport(collectEntries([dir]), dir, 'test');
    assert.ok(existsSync(r.html));
    assert.equal(r.pngs.length, 2);
    const html = readFileSync(r.html, 'utf8');
    assert.match(html, /<svg/);
    assert.match(html, /lr=10, batch=100 <span class="bad">diverged/);
  });

  it('the report reads epochs as whole numbers on its x axis (a one-epoch run: 1, not 1.000000)', async () => {
    const { writeReport } = await import('../training/report.ts');
    const epoch = (n: number, loss: number, acc: number) => ({ epoch: n, step: 10 * n, trainLoss: loss, trainAcc: 0.5, testLoss: loss, testAcc: acc, seconds: 1, imagesPerSecond: 100, lr: 0.01 });
    /** Each chart's axis labels, x then y, as shown (the axes' aria-labels aside). */
    const axes = async (epochs: ReturnType<typeof epoch>[]) => {
      const r = await writeReport([{ name: 'a', group: 'g', status: 'done', epochs }], tmp(), 'axes');
      const groups = readFileSync(r.html, 'utf8').match(/role-axis-label"[^]*?<\/g>/g) ?? [];
      return groups.map((g) => [...g.matchAll(/>([^<]+)<\/text>/g)].map((m) => m[1]).join(' '));
    };
    // Accuracy chart (x, y), then loss chart (x, y).
    assert.deepEqual(await axes([epoch(1, 0.51, 0.91)]), ['1', '91', '1', '0.51']);
    const three = await axes([epoch(1, 2.3, 0.12), epoch(2, 0.4, 0.9), epoch(3, 0.21, 0.975)]);
    assert.equal(three[0], '1 2 3');
    assert.equal(three[2], '1 2 3');
    assert.match(three[1], /^10 20 30 .* 100$/);
  });

  it('a re-run with other shared flags stops with one line saying what differs, and --force runs those trials again', async () => {
    const { grid, parseAxis, runSweep, runSearch } = await import('../training/sweep.ts');
    const { parseSpace } = await import('../training/tpe.ts');
    const dir = tmp();
    const trials = grid([parseAxis('lr=0.01,0.02')]);
    const first = { 'limit-train': 200, epochs: 1, batch: 100, opt: 'sgd', threads: 2 };
    await runSweep({ arch: 'partA', base: first, trials, dir, fit: quiet, log: () => {} });
    const changed = { ...first, epochs: 2, 'limit-train': 300 };
    const manifest = readFileSync(join(dir, 'sweep.json'), 'utf8');
    await assert.rejects(
      runSweep({ arch: 'partA', base: changed, trials, dir, fit: quiet, log: () => {} }),
      (err: unknown) =>
        err instanceof UsageError &&
        err.message === `${dir}: trial lr=0.01 was run with epochs=1, limit-train=200; this sweep asks for epochs=2, limit-train=300 (and 1 more trial): use another --out, or --force to run them again`,
    );
    assert.equal(readFileSync(join(dir, 'sweep.json'), 'utf8'), manifest, 'a refused re-run leaves the sweep as it was');
    // How it runs is not part of a trial's identity.
    const lines: string[] = [];
    await runSweep({ arch: 'partA', base: { ...first, threads: 1 }, trials, dir, fit: quiet, log: (l) => lines.push(l) });
    assert.equal(lines.filter((l) => /skipped \(same recipe\)$/.test(l)).length, 2);
    const forced = await runSweep({ arch: 'partA', base: changed, trials, dir, fit: quiet, log: () => {}, force: true });
    assert.deepEqual(forced.trials.map((t) => t.status), ['done', 'done']);
    assert.equal(readFileSync(join(dir, 'lr=0.01', 'metrics.jsonl'), 'utf8').trim().split('\n').length, 2);
    // A search counts its trials as one series.
    const counted: string[] = [];
    await runSearch({ arch: 'partA', base: first, space: parseSpace('lr=0.01|0.02'), trials: 2, algo: 'random', seed: 1, dir: tmp(), fit: quiet, log: (l) => counted.push(l) });
    assert.deepEqual(counted.filter((l) => /^\[\d\/\d\]/.test(l)).map((l) => l.slice(0, 5)), ['[1/2]', '[2/2]']);
  });

  it('a search ranks trials by validation accuracy, never by the test set: each record holds the chosen epoch\'s validation and test accuracy', async () => {
    const { runSearch, trialScore } = await import('../training/sweep.ts');
    const { parseSpace } = await import('../training/tpe.ts');
    const { chosenEpoch, readMetrics } = await import('../training/run-folder.ts');
    const base = { 'limit-train': 300, 'val-split': 100, epochs: 2, batch: 50, opt: 'sgd', threads: 2 };
    const m = await runSearch({ arch: 'partA', base, space: parseSpace('lr=0.005|0.05'), trials: 2, algo: 'random', seed: 1, dir: tmp(), fit: quiet, log: () => {} });
    for (const t of m.trials) {
      const chosen = chosenEpoch(readMetrics(t.run))!;
      assert.equal(t.validation, chosen.valAcc, t.id);
      assert.equal(t.best, chosen.testAcc, t.id);
      assert.equal(trialScore(t), chosen.valAcc, t.id);
    }
    // A trial better on the test set but worse on validation ranks lower.
    const record = { id: 'x', group: 'g', settings: {}, run: 'r', status: 'done' as const };
    assert.ok(trialScore({ ...record, validation: 0.95, best: 0.9 }) > trialScore({ ...record, validation: 0.9, best: 0.99 }));
    assert.equal(trialScore({ ...record, best: 0.97 }), 0.97, 'a run without validation images ranks by test accuracy');
  });

  it('rejects a key that is neither a flag nor a preset option', async () => {
    const { splitSettings } = await import('../training/sweep.ts');
    assert.throws(() => splitSettings('jhu-net', { depth: '3' }), /--vary depth: not a training flag or an option of jhu-net/);
    assert.deepEqual(splitSettings('jhu-net', { width: '2', lr: '0.1', augment: 'true' }), { flags: { lr: 0.1, augment: true }, options: { width: '2' } });
  });
});

describe('augmentation', () => {
  it('is the identity with no rotation, translation or jitter, and moves pixels when asked', async () => {
    const { augmentImage } = await import('../training/augment.ts');
    const { Rng } = await import('../common/rng.ts');
    const src = Uint8Array.from({ length: 784 }, (_, i) => ((i % 28) > 8 && (i % 28) < 14 && i > 200 && i < 600 ? 200 : 0));
    const out = new Uint8Array(784);
    augmentImage(src, out, { rotate: 0, translate: 0, jitter: 0 }, Rng.seeded(1));
    assert.deepEqual(Array.from(out), Array.from(src));
    augmentImage(src, out, { rotate: 0, translate: 3, jitter: 0 }, Rng.seeded(2));
    assert.notDeepEqual(Array.from(out), Array.from(src));
    const again = new Uint8Array(784);
    augmentImage(src, again, { rotate: 0, translate: 3, jitter: 0 }, Rng.seeded(2));
    assert.deepEqual(Array.from(again), Array.from(out), 'the same generator state gives the same image');
    const mass = (p: Uint8Array) => p.reduce((a, b) => a + b, 0);
    augmentImage(src, out, { rotate: 5, translate: 0, jitter: 0 }, Rng.seeded(3));
    assert.ok(Math.abs(mass(out) - mass(src)) / mass(src) < 0.05, 'a small rotation keeps the ink');
  });

  it('flip mirrors left-right about half the time, exactly', async () => {
    const { augmentImage } = await import('../training/augment.ts');
    const { Rng } = await import('../common/rng.ts');
    const src = Uint8Array.from({ length: 784 }, (_, i) => (i * 37) % 256);
    const mirrored = Uint8Array.from({ length: 784 }, (_, i) => src[i - (i % 28) + 27 - (i % 28)]);
    const out = new Uint8Array(784);
    const rng = Rng.seeded(4);
    let flips = 0;
    for (let n = 0; n < 400; n++) {
      augmentImage(src, out, { rotate: 0, translate: 0, jitter: 0, flip: true }, rng);
      const isSrc = out.every((v, i) => v === src[i]);
      const isMirror = out.every((v, i) => v === mirrored[i]);
      assert.ok(isSrc !== isMirror, 'each output is the image or its mirror');
      if (isMirror) flips++;
    }
    assert.ok(flips > 160 && flips < 240, `${flips} of 400 flipped`);
  });

  it('erase blackens one rectangle of 2-33% of the image in every channel, with the given probability', async () => {
    const { augmentImage } = await import('../training/augment.ts');
    const { Rng } = await import('../common/rng.ts');
    const shape = [3, 20, 24] as const;
    const plane = 20 * 24;
    const src = new Uint8Array(3 * plane).fill(200);
    const out = new Uint8Array(3 * plane);
    const rng = Rng.seeded(5);
    let erased = 0;
    for (let n = 0; n < 400; n++) {
      augmentImage(src, out, { rotate: 0, translate: 0, jitter: 0, erase: 0.5 }, rng, shape);
      const black = [...out.subarray(0, plane).keys()].filter((i) => out[i] === 0);
      for (let ch = 1; ch < 3; ch++) assert.deepEqual([...out.subarray(ch * plane, (ch + 1) * plane).keys()].filter((i) => out[ch * plane + i] === 0), black);
      assert.ok(out.every((v) => v === 0 || v === 200));
      if (black.length === 0) continue;
      erased++;
      const rows = black.map((i) => Math.floor(i / 24));
      const cols = black.map((i) => i % 24);
      const h = Math.max(...rows) - Math.min(...rows) + 1;
      const w = Math.max(...cols) - Math.min(...cols) + 1;
      assert.equal(black.length, h * w, 'the black pixels form one rectangle');
      assert.ok(h * w >= 0.02 * plane * 0.6 && h * w <= 0.33 * plane * 1.4, `area ${h * w} of ${plane}`);
    }
    assert.ok(erased > 160 && erased < 240, `${erased} of 400 erased`);
  });

  it('--erase adds erasing to the preset’s augmentation and is refused with --no-augment', async () => {
    assert.deepEqual((await config('fashion-best', { erase: 0.5 })).augment, { rotate: 0, translate: 1, jitter: 0, flip: true, erase: 0.5 });
    assert.deepEqual((await config('partB', { erase: 0.25 })).augment, { rotate: 0, translate: 0, jitter: 0, erase: 0.25 });
    assert.equal((await config('fashion-best', {})).augment?.erase, undefined);
    await assert.rejects(config('fashion-best', { erase: 0.5, augment: false }), (e: Error) => e instanceof UsageError && /^--erase: /.test(e.message));
    await assert.rejects(config('fashion-best', { erase: 2 }), (e: Error) => e instanceof UsageError && /--erase/.test(e.message));
  });
});

describe('validation split', () => {
  it('holds out a seeded, disjoint set and keeps the rest in order', async () => {
    const { holdOut, loadDataset } = await import('../datasets/sources.ts');
    const mnist = await loadDataset('mnist', { env: {} });
    const part = { images: mnist.train.images.subarray(0, 1000 * 784), labels: mnist.train.labels.subarray(0, 1000), count: 1000, shape: mnist.train.shape };
    const a = holdOut(part, 100, 7);
    const b = holdOut(part, 100, 7);
    assert.equal(a.train.count, 900);
    assert.equal(a.val.count, 100);
    assert.deepEqual(a.val.labels, b.val.labels);
    assert.notDeepEqual(holdOut(part, 100, 8).val.labels, a.val.labels);
    // Every image lands on exactly one side: the label counts add up, and training keeps the original order.
    const count = (l: Uint8Array) => Array.from({ length: 10 }, (_, k) => l.filter((v) => v === k).length);
    assert.deepEqual(count(a.train.labels).map((n, k) => n + count(a.val.labels)[k]), count(part.labels));
    const key = (images: Uint8Array, i: number) => Buffer.from(images.subarray(i * 784, (i + 1) * 784)).toString('base64');
    const index = new Map(Array.from({ length: part.count }, (_, i) => [key(part.images, i), i]));
    const positions = Array.from({ length: a.train.count }, (_, i) => index.get(key(a.train.images, i))!);
    assert.ok(positions.every((p, i) => i === 0 || p > positions[i - 1]), 'training images keep their order');
    assert.ok(Array.from({ length: a.val.count }, (_, i) => index.get(key(a.val.images, i))!).every((p) => !positions.includes(p)), 'no image on both sides');
  });

  it('best.onnx is the epoch with the best validation accuracy, and the metrics carry it', async () => {
    const dir = tmp();
    const cfg = await config('partA', { 'limit-train': 500, epochs: 3, batch: 100, 'val-split': 300, opt: 'sgd', lr: 0.05 });
    assert.equal(cfg.valSplit, 300);
    assert.equal(cfg.flags['val-split'], 300);
    await fit(cfg, { runDir: dir, resume: false, ...quiet });
    const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(metrics.every((m) => typeof m.valAcc === 'number' && typeof m.testAcc === 'number'));
    const bestVal = metrics.reduce((a, m) => (m.valAcc >= a.valAcc ? m : a));
    const { decodeGraph } = await import('../graph-builder/graph/onnx.ts');
    const md = decodeGraph(readFileSync(join(dir, 'best.onnx'))).metadata;
    assert.equal(md['cnnlab.epoch'], String(bestVal.epoch));
    assert.equal(md['cnnlab.val_accuracy'], bestVal.valAcc.toFixed(4));
  });

  it('a run from before the split resumes without one; a new run defaults to 5,000 images', async () => {
    const { readRunConfig } = await import('../training/config.ts');
    const fresh = await config('partA', {});
    assert.equal(fresh.valSplit, 5000);
    const dir = tmp();
    const { 'val-split': _, ...oldFlags } = fresh.flags;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...fresh, flags: oldFlags }));
    assert.equal((await readRunConfig(dir)).valSplit, 0);
  });
});

describe('TensorBoard log', () => {
  it('holds every step’s loss and lr, and per epoch the weight histograms and a grid of misclassified test images', async () => {
    const { readEvents } = await import('../training/tensorboard.ts');
    const dir = tmp();
    const cfg = await config('partA', { 'limit-train': 300, epochs: 2, batch: 100, 'val-split': 0 });
    await fit(cfg, { runDir: dir, resume: false, ...quiet });
    const file = readdirSync(dir).find((f) => f.startsWith('events.out.tfevents'))!;
    const values = readEvents(readFileSync(join(dir, file))).flatMap((e) => (e.summary?.value ?? []).map((v) => ({ step: e.step, ...v }) as { step: number; tag?: string; histo?: unknown; image?: unknown }));
    assert.deepEqual(values.filter((v) => v.tag === 'step/loss').map((v) => v.step), [1, 2, 3, 4, 5, 6]);
    assert.equal(values.filter((v) => v.tag === 'step/lr').length, 6);
    const histos = values.filter((v) => v.tag === 'conv1.weight');
    assert.deepEqual(histos.map((v) => v.step), [3, 6]);
    const h = histos[0].histo as { num: number; bucket: number[]; bucketLimit: number[]; min: number; max: number };
    assert.equal(h.num, 32 * 25);
    assert.equal(h.bucket.reduce((a, b) => a + b, 0), 32 * 25);
    assert.ok(h.bucketLimit[h.bucketLimit.length - 1] > h.max);
    const images = values.filter((v) => v.tag === 'misclassified/test');
    assert.equal(images.length, 2);
    const img = images[0].image as { width: number; height: number; encodedImageString: Uint8Array };
    assert.deepEqual([...img.encodedImageString.subarray(1, 4)], [...Buffer.from('PNG')]);
    assert.ok(img.width > 0 && img.height > 0);
  });
});

describe('augmentation as torchvision does it on PIL images (pil: true)', () => {
  it('samples nearest neighbours: a rotated image holds only values of the original, and nothing moved is the identity', async () => {
    const { augmentImage } = await import('../training/augment.ts');
    const { Rng } = await import('../common/rng.ts');
    const src = Uint8Array.from({ length: 784 }, (_, i) => 50 + ((i * 7) % 3) * 100);
    const present = new Set(src);
    const out = new Uint8Array(784);
    const rng = Rng.seeded(4);
    for (let k = 0; k < 20; k++) {
      augmentImage(src, out, { rotate: 15, translate: 2, jitter: 0, pil: true }, rng);
      assert.ok(out.every((v) => v === 0 || present.has(v)), 'no interpolated value');
    }
    augmentImage(src, out, { rotate: 0, translate: 0, jitter: 0, pil: true }, rng);
    assert.deepEqual(out, src);
    // The bilinear form interpolates: values the original does not have appear.
    augmentImage(src, out, { rotate: 15, translate: 0, jitter: 0 }, rng);
    assert.ok(out.some((v) => v !== 0 && !present.has(v)));
  });

  it('jitters brightness and contrast in uint8 as PIL: a flat image stays flat at trunc(v x brightness)', async () => {
    const { augmentImage } = await import('../training/augment.ts');
    const { Rng } = await import('../common/rng.ts');
    const src = new Uint8Array(784).fill(100);
    const out = new Uint8Array(784);
    const rng = Rng.seeded(9);
    const seen = new Set<number>();
    for (let k = 0; k < 50; k++) {
      augmentImage(src, out, { rotate: 0, translate: 0, jitter: 0.4, pil: true }, rng);
      assert.ok(out.every((v) => v === out[0]), 'contrast around the mean of a flat image changes nothing');
      assert.ok(out[0] >= 60 && out[0] <= 140, `brightness factor in 0.6..1.4: ${out[0]}`);
      seen.add(out[0]);
    }
    assert.ok(seen.size > 20, 'the factor is drawn per image');
  });
});
