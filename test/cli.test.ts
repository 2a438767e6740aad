import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const cnnlab = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

describe('progress in logs', () => {
  it('with stderr not a terminal, train writes a progress line (images, img/s, loss) every CNNLAB_PROGRESS_SECONDS', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-progress-'));
    const r = spawnSync(process.execPath, [CLI, 'train', 'baseline', '--limit-train', '1024', '--val-split', '0', '--epochs', '1', '--batch', '64', '--steps-per-run', '2', '--out', join(dir, 'run')], {
      encoding: 'utf8',
      env: { ...process.env, CNNLAB_PROGRESS_SECONDS: '0' },
    });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => /^epoch 1\/1: \d+\/1024 images, \d+ img\/s, loss \d+\.\d{4}, lr /.test(l));
    assert.ok(lines.length >= 4, r.stderr);
  });
});

describe('the cnnlab command', () => {
  it('--help lists every command with a description', () => {
    const out = cnnlab('--help');
    assert.equal(out.status, 0);
    for (const c of ['datasets', 'presets', 'summary', 'build-graph', 'train', 'reproduce', 'eval', 'predict', 'serve', 'transfer', 'sweep', 'search', 'report', 'worker']) {
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
    const { resumedConfig } = await import('../training/api.ts');
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

  it('refuses a run whose saved recipe this build resolves differently (a preset changed since it started), in one line naming the field', async () => {
    const { writeFileSync, mkdirSync } = await import('node:fs');
    const { loadArchitecture } = await import('../graph-builder/dsl/arch.ts');
    const { resolveRunConfig } = await import('../training/config.ts');
    const { resumedConfig } = await import('../training/api.ts');
    const { CnnlabError } = await import('../common/errors.ts');
    const dir = join(mkdtempSync(join(tmpdir(), 'cnnlab-resume-')), 'eva');
    mkdirSync(dir);
    const cfg = resolveRunConfig(await loadArchitecture('eva-best'), { epochs: 2 });
    // Keys in another order are the same recipe.
    const reordered = { ...cfg, augment: Object.fromEntries(Object.entries(cfg.augment!).reverse()) };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(reordered));
    assert.equal((await resumedConfig(dir)).epochs, 2);
    // eva-best before its augmentation followed torchvision's PIL semantics.
    const before = { ...cfg, augment: { rotate: 5, translate: 0, jitter: 0.4 } };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(before));
    await assert.rejects(resumedConfig(dir), (e: Error) => e instanceof CnnlabError && !e.message.includes('\n') && e.message.startsWith(`${join(dir, 'config.json')}: `) && /augment was \{.*\}, this build makes it \{.*"pil":true/.test(e.message));
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
    // Only this project's configuration: npm hands its own (and the machine's user config, such as
    // nodedir) to scripts as npm_config_* variables, which the npm started here would read again.
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
    const env = { ...inherited, npm_config_userconfig: userconfig, npm_config_update_notifier: 'false' };
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

describe('resume keeps the run’s word', () => {
  const base = ['--limit-train', '300', '--batch', '100', '--epochs', '2', '--schedule', 'onecycle', '--seed', '4'];
  let run = '';
  const lines = (file: string) => readFileSync(join(run, file), 'utf8').trim().split('\n');

  it('--resume --epochs 3 on a finished 2-epoch run trains a third epoch and says how the schedule changes', () => {
    run = join(mkdtempSync(join(tmpdir(), 'cnnlab-extend-')), 'run');
    assert.equal(cnnlab('train', 'partA', ...base, '--out', run).status, 0);
    const r = cnnlab('train', '--resume', '--out', run, '--epochs', '3', '--threads', '1');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /--epochs 3: the run now ends after 3 epochs instead of 2; its onecycle schedule spans the whole run, so it is recomputed over 3 epochs: at step 6 the learning rate goes from \S+ to \S+/);
    assert.equal(lines('metrics.jsonl').length, 3);
    assert.equal(JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')).epochs, 3);
    assert.equal(JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')).threads, 1);
  });

  it('a flag that would change what the run computes, another model, or fewer epochs than done: one line, exit 2', () => {
    for (const [args, pattern] of [
      [['--lr', '0.5'], /^cnnlab: --resume: --lr 0\.5 would change what the run in \S+ computes; a resumed run keeps its recipe/],
      [['--opt', 'sgd', '--augment'], /^cnnlab: --resume: --opt sgd, --augment true would change what the run/],
      [['partB'], /^cnnlab: --resume: the run in \S+ trains partA; partB was named/],
      [['--epochs', '1'], /^cnnlab: --epochs 1: the run in \S+ has already trained 3 epochs\n$/],
    ] as const) {
      const r = cnnlab('train', '--resume', '--out', run, ...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
    }
    // A flag equal to the saved recipe is no conflict.
    assert.equal(cnnlab('train', '--resume', '--out', run, '--schedule', 'onecycle', '--seed', '4').status, 0);
  });
});

describe('reproduce reuses only runs of the same recipe', () => {
  it('a folder holding a run of another recipe is one line naming what differs, before anything trains', async () => {
    const { loadArchitecture } = await import('../graph-builder/dsl/arch.ts');
    const { resolveRunConfig } = await import('../training/config.ts');
    const out = mkdtempSync(join(tmpdir(), 'cnnlab-repro-'));
    const dir = join(out, 'ntnu', 'baseline-mnist-e1');
    (await import('node:fs')).mkdirSync(dir, { recursive: true });
    const cfg = resolveRunConfig(await loadArchitecture('baseline'), { dataset: 'mnist', epochs: 1, lr: 0.5, 'val-split': 0 });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const r = cnnlab('reproduce', 'ntnu', '--epochs', '1', '--out', out);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /baseline-mnist-e1: holds a run with lr=0\.5, not this one \(lr=\(default\)\): use another --out, or --force to train it again\n$/);
  });
});

describe('architecture files outside the repository', () => {
  const net = `import { sequential, conv2d, relu, maxPool2d, flatten, linear } from 'cnnlab';
export default sequential(conv2d(1, 4, 3, { padding: 1 }), relu(), maxPool2d(2), flatten(), linear(4 * 14 * 14, 10));
export const recipe = { optimizer: 'adam', lr: 1e-3, batch: 100, epochs: 1 };
`;
  const run = (cwd: string, ...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8' });

  it('the README’s TypeScript example imports from cnnlab, installed beside it as a dependency or not at all', async () => {
    const { symlinkSync, mkdirSync } = await import('node:fs');
    for (const installed of [true, false]) {
      const dir = mkdtempSync(join(tmpdir(), 'cnnlab-user-'));
      writeFileSync(join(dir, 'my-net.ts'), net);
      if (installed) {
        mkdirSync(join(dir, 'node_modules'));
        symlinkSync(join(import.meta.dirname, '..'), join(dir, 'node_modules', 'cnnlab'));
      }
      const r = run(dir, 'summary', '--arch-file', 'my-net.ts');
      assert.equal(r.status, 0, `${installed ? 'installed' : 'not installed'}: ${r.stderr}`);
      assert.match(r.stdout, /Total params: 7,890/);
    }
  });

  it('a TypeScript file with a syntax error is one line with the compiler’s message at file:line:column, exit 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-user-'));
    writeFileSync(join(dir, 'my-net.ts'), net.replace('relu(), ', 'relu() '));
    const r = run(dir, 'summary', '--arch-file', 'my-net.ts');
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `cnnlab: --arch-file my-net.ts: cannot load: ${join(dir, 'my-net.ts')}:2:67: Expected ")" but found "maxPool2d"\n`);
  });

  it('sweep and search take --arch-file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-user-'));
    writeFileSync(join(dir, 'my-net.ts'), net);
    const flags = ['--limit-train', '100', '--epochs', '1', '--batch', '100'];
    const sweep = run(dir, 'sweep', '--arch-file', 'my-net.ts', '--vary', 'lr=0.001,0.002', ...flags, '--out', 'sweep', '--no-report');
    assert.equal(sweep.status, 0, sweep.stderr);
    assert.match(sweep.stdout, /2 done, 0 diverged, 0 invalid/);
    const search = run(dir, 'search', '--arch-file', 'my-net.ts', '--space', 'lr=0.001|0.002', '--trials', '2', '--algo', 'random', ...flags, '--out', 'search');
    assert.equal(search.status, 0, search.stderr);
    assert.match(search.stdout, /\[2\/2\]/);
    // 5,000 training images are held out by default: the search ranks by them.
    assert.match(search.stdout, /best: validation \d+\.\d\d% \(test \d+\.\d\d%\) with lr=/);
  });
});

describe('--ep wasm', () => {
  it('trains with the WebAssembly threads --threads asks for, to the losses of one thread', () => {
    const root = mkdtempSync(join(tmpdir(), 'cnnlab-wasm-threads-'));
    const runs = [1, 2].map((threads) => {
      const out = join(root, `t${threads}`);
      const r = cnnlab('train', 'baseline', '--ep', 'wasm', '--threads', String(threads), '--limit-train', '600', '--batch', '100', '--epochs', '1', '--val-split', '0', '--seed', '3', '--out', out);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`onnxruntime-web wasm, ${threads} threads?\\n`));
      return JSON.parse(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim()) as { trainLoss: number; testLoss: number };
    });
    assert.ok(Math.abs(runs[0].trainLoss - runs[1].trainLoss) <= 1e-6 * runs[0].trainLoss, `train loss: 1 thread ${runs[0].trainLoss}, 2 threads ${runs[1].trainLoss}`);
    assert.ok(Math.abs(runs[0].testLoss - runs[1].testLoss) <= 1e-6 * runs[0].testLoss, `test loss: 1 thread ${runs[0].testLoss}, 2 threads ${runs[1].testLoss}`);
  });
});

describe('bad input files: one rule everywhere', () => {
  it('a missing or a corrupt model, architecture file or run folder is one line naming it, exit 2 (as a bad flag)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-badfiles-'));
    const corrupt = join(dir, 'corrupt.onnx');
    writeFileSync(corrupt, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    const badArch = join(dir, 'bad.json');
    writeFileSync(badArch, '{ broken');
    const missing = join(dir, 'missing.onnx');
    const out = join(dir, 'run');
    for (const args of [
      ['eval', missing],
      ['eval', corrupt],
      ['predict', 'digit.png', '--model', missing],
      ['predict', 'digit.png', '--model', corrupt],
      ['inspect', missing],
      ['inspect', corrupt],
      ['train', '--model', missing, '--out', out],
      ['train', '--model', corrupt, '--out', out],
      ['train', '--arch-file', join(dir, 'missing.json'), '--out', out],
      ['train', '--arch-file', badArch, '--out', out],
      ['train', '--resume', '--out', dir],
    ]) {
      const r = cnnlab(...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^cnnlab: .*(missing\.onnx|corrupt\.onnx|missing\.json|bad\.json|config\.json)/, args.join(' '));
    }
    assert.ok(!existsSync(out));
  });
});

describe('presets', () => {
  it('lists every preset with its columns aligned, fashion-best included', () => {
    const r = cnnlab('presets');
    assert.equal(r.status, 0, r.stderr);
    const rows = r.stdout.split('\n').filter((l) => /^\S/.test(l));
    assert.ok(rows.some((l) => l.startsWith('fashion-best ')));
    const at = new Set(rows.map((l) => l.indexOf(' params  seed ')));
    assert.equal(at.size, 1, rows.join('\n'));
    const options = r.stdout.split('\n').filter((l) => /^\s+\S+=/.test(l));
    assert.equal(new Set(options.map((l) => l.search(/\S/))).size, 1, options.join('\n'));
  });
});
