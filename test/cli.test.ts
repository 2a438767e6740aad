import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const cnnlab = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

describe('the cnnlab command', () => {
  it('--help lists every command with a description', () => {
    const out = cnnlab('--help');
    assert.equal(out.status, 0);
    for (const c of ['datasets', 'presets', 'summary', 'build-graph', 'train', 'reproduce', 'eval', 'predict', 'serve', 'transfer', 'sweep', 'search', 'report']) {
      assert.match(out.stdout, new RegExp(`cnnlab ${c}\\b.*\\s{2,}\\S`), c);
    }
  });

  it('unknown commands and flags: one line, exit 2', () => {
    for (const args of [['fly'], ['train', 'partA', '--speed', 'fast'], ['summary', 'partQ']]) {
      const out = cnnlab(...args);
      assert.equal(out.status, 2, args.join(' '));
      assert.equal(out.stderr.trim().split('\n').length, 1, out.stderr);
      assert.match(out.stderr, /^cnnlab: /);
    }
  });

  it('summary and build-graph', () => {
    const summary = cnnlab('summary', 'eva-best', '--rf');
    assert.equal(summary.status, 0);
    assert.match(summary.stdout, /Total params: 7,496/);
    assert.match(summary.stdout, /Receptive field/);
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-cli-'));
    const build = cnnlab('build-graph', 'partB', '--out', dir, '--opt', 'sgd', '--momentum', '0.9');
    assert.equal(build.status, 0, build.stderr);
    assert.match(build.stdout, /Total params: 3,274,634/);
    for (const f of ['train_step.onnx', 'eval.onnx', 'inference.onnx', 'init.ckpt', 'manifest.json']) assert.ok(existsSync(join(dir, f)), f);
  });
});

describe('resume', () => {
  it('keeps a transfer run’s frozen features (set by transfer, not by a flag)', async () => {
    const { writeFileSync, mkdirSync } = await import('node:fs');
    const { loadArchitecture } = await import('../graph-builder/dsl/arch.ts');
    const { resolveRunConfig } = await import('../training/config.ts');
    const { resumedConfig } = await import('../cli/commands/train.ts');
    const dir = join(mkdtempSync(join(tmpdir(), 'cnnlab-resume-')), 'finetune');
    mkdirSync(dir);
    const cfg = resolveRunConfig(await loadArchitecture('partA'), { dataset: 'fashion-mnist', epochs: 1, lr: 5e-5 });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, freeze: 'features' }));
    const back = await resumedConfig(dir);
    assert.equal(back.freeze, 'features');
    assert.equal(back.lr, 5e-5);
    assert.equal(back.dataset, 'fashion-mnist');
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    assert.equal((await resumedConfig(dir)).freeze, undefined);
  });
});

describe('the table of training flags', () => {
  it('every flag in the table is an option of train, sweep and search, and only the graph flags of build-graph', async () => {
    const { FLAG_NAMES, GRAPH_FLAGS } = await import('../training/flags.ts');
    const help = (cmd: string) => cnnlab(cmd, '--help').stdout;
    for (const cmd of ['train', 'sweep', 'search']) {
      const text = help(cmd);
      for (const f of FLAG_NAMES) assert.match(text, new RegExp(`--${f}\\b`), `${cmd} --${f}`);
    }
    const build = help('build-graph');
    for (const f of FLAG_NAMES) assert.equal(new RegExp(`--${f}\\b`).test(build), GRAPH_FLAGS.includes(f) || f === 'dataset' || f === 'seed', `build-graph --${f}`);
  });

  it('a bad value is one line naming the flag and its range or choices, from the table alone', async () => {
    const { checkFlags } = await import('../training/flags.ts');
    assert.throws(() => checkFlags({ epochs: 1.5 }), / --epochs: expected a whole number in 1\.\.10000, got 1\.5$/);
    assert.throws(() => checkFlags({ momentum: 1 }), / --momentum: expected a number in 0\.\.1 \(exclusive\), got 1$/);
    assert.throws(() => checkFlags({ schedule: 'linear' }), / --schedule: expected one of constant, step, onecycle, cosine, got 'linear'$/);
    assert.doesNotThrow(() => checkFlags({ epochs: 3, momentum: 0.9, schedule: 'step', augment: true }));
  });

  it('sweep varies exactly the flags that change what a run computes, read as their type', async () => {
    const { splitSettings } = await import('../training/sweep.ts');
    const { flags, options } = splitSettings('jhu-net', { lr: '0.1', augment: 'false', opt: 'adam', width: '2' });
    assert.deepEqual(flags, { lr: 0.1, augment: false, opt: 'adam' });
    assert.deepEqual(options, { width: '2' });
    assert.throws(() => splitSettings('jhu-net', { threads: '2' }), / --vary threads: not a training flag or an option of jhu-net; expected one of opt, lr, /);
    assert.throws(() => splitSettings('jhu-net', { batch: 'big' }), / --vary batch=big: expected a number$/);
  });
});

describe('set-up', () => {
  it('npx cnnlab prints no npm warning about the project’s own configuration', () => {
    const userconfig = join(mkdtempSync(join(tmpdir(), 'cnnlab-npmrc-')), 'npmrc');
    writeFileSync(userconfig, '');
    const env = { ...process.env, npm_config_userconfig: userconfig, npm_config_update_notifier: 'false' };
    const out = spawnSync('npm', ['exec', '--offline', '--', 'cnnlab', '--version'], { cwd: join(import.meta.dirname, '..'), encoding: 'utf8', env });
    assert.equal(out.status, 0, out.stderr);
    assert.equal(out.stdout.trim(), '0.1.0');
    assert.doesNotMatch(out.stderr, /npm warn/i);
  });

  it('without root, the set-up script installs nothing and names the missing packages in one line', () => {
    const script = join(import.meta.dirname, '..', 'scripts', 'setup.sh');
    const env = { ...process.env, CNNLAB_SETUP_PACKAGES: 'cnnlab-no-such-package fonts-dejavu-core' };
    const out = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', script], { encoding: 'utf8', env });
    assert.equal(out.status, 1, out.stderr);
    assert.equal(out.stderr.trim().split('\n').length, 1);
    assert.match(out.stderr, /^cnnlab: the tests need Debian packages that are not installed: run 'sudo apt-get install cnnlab-no-such-package'/);
    const present = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', script], { encoding: 'utf8', env: { ...process.env, CNNLAB_SETUP_PACKAGES: 'fonts-dejavu-core' } });
    assert.equal(present.status, 0, present.stderr);
  });
});

describe('flags given twice', () => {
  it('the last value wins, for numbers (which yargs used to add up) and strings alike', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'cnnlab-twice-')), 'run');
    const r = cnnlab('train', 'partA', '--epochs', '1.5', '--epochs', '1', '--opt', 'sgd', '--opt=adam', '--limit-train', '100', '--batch', '50', '--batch=100', '--out', out);
    assert.equal(r.status, 0, r.stderr);
    const saved = JSON.parse((await import('node:fs')).readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(saved.epochs, 1);
    assert.equal(saved.batch, 100);
    assert.equal(saved.train.optimizer.name, 'adam');
  });
});
