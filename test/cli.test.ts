import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
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
