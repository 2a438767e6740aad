import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const ROOT = join(import.meta.dirname, '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

/**
 * The environment of a user's shell: none of the npm_* settings `npm test` hands its scripts
 * (this project's ignore-scripts among them), no NODE_OPTIONS (no tsx), and onnxruntime-node's
 * download of its CUDA libraries from outside the npm registry skipped, as the README says.
 */
function userEnv(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'NODE_OPTIONS'));
  return { ...env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_update_notifier: 'false' };
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The README's API example in strict TypeScript: a DSL model trained for a few steps on MNIST, then evaluated. */
const SCRIPT = `import { conv2d, evaluate, flatten, linear, maxPool2d, relu, sequential, train, type EpochMetrics, type TrainResult } from 'cnnlab';

const model = sequential(conv2d(1, 4, 3, { padding: 1 }), relu(), maxPool2d(2), flatten(), linear(4 * 14 * 14, 10));
const epochs: EpochMetrics[] = [];
const run: TrainResult = await train({ model, dataset: 'mnist', limitTrain: 512, valSplit: 0, epochs: 1, batch: 64, out: 'run', log: () => undefined, onEpochEnd: (m) => epochs.push(m) });
const { accuracy, count } = await evaluate({ model: run.models.best });
console.log(JSON.stringify({ accuracy, count, epochs: epochs.length, steps: run.best?.step, tsx: process.execArgv.join(' ') }));
`;

const TSCONFIG = { compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext' }, files: ['main.ts'] };

describe('the packed package in an empty project', () => {
  /** The project the tarball is installed in, and the accuracy its script measured (set by the first test). */
  let project = '';
  let accuracy = NaN;

  it('installs from its tarball, type-checks a strict script that trains and evaluates a DSL model on MNIST, and runs it with plain node', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-package-'));
    const env = userEnv();
    // npm pack runs the prepare script (the build into dist/), which this project's .npmrc would skip.
    const packed = JSON.parse(ok(spawnSync('npm', ['pack', '--ignore-scripts=false', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', env }), 'npm pack')) as { filename: string; files: { path: string }[] }[];
    const files = packed[0].files.map((f) => f.path);
    assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('bin/cnnlab.js'), files.join(' '));
    // No TypeScript source: beside the .d.ts files it is what a user's tsc would read (and check with their settings).
    assert.deepEqual(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), [], 'TypeScript sources in the package');
    assert.ok(files.includes('dist/inference/web/app.bundle.js'), 'the page’s script, bundled');

    project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    ok(spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, packed[0].filename)], { cwd: project, encoding: 'utf8', env }), 'npm install');

    writeFileSync(join(project, 'main.ts'), SCRIPT);
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG));
    ok(spawnSync(process.execPath, [TSC, '-p', '.'], { cwd: project, encoding: 'utf8', env }), 'tsc --strict');
    const out = JSON.parse(ok(spawnSync(process.execPath, ['main.js'], { cwd: project, encoding: 'utf8', env }), 'node main.js')) as { accuracy: number; count: number; epochs: number; steps: number; tsx: string };
    assert.equal(out.count, 10000);
    assert.equal(out.epochs, 1);
    assert.equal(out.steps, 8);
    assert.equal(out.tsx, '');
    // 8 steps of 64 images: well above chance (10%); 53% measured.
    assert.ok(out.accuracy > 0.3, `accuracy ${out.accuracy}`);
    assert.ok(existsSync(join(project, 'run', 'model.json')), 'the DSL model written into its run folder');
    accuracy = out.accuracy;
  });

  it('its cnnlab command runs on plain node: eval, and an architecture file in TypeScript importing cnnlab (through tsx)', async () => {
    const env = userEnv();
    const bin = join(project, 'node_modules', 'cnnlab', 'bin', 'cnnlab.js');
    const evaluated = JSON.parse(ok(spawnSync(process.execPath, [bin, 'eval', 'run', '--json', '--n', '0'], { cwd: project, encoding: 'utf8', env }), 'cnnlab eval')) as { accuracy: number };
    assert.equal(evaluated.accuracy, accuracy);
    writeFileSync(join(project, 'net.ts'), `import { sequential, conv2d, relu, flatten, linear } from 'cnnlab';\nexport default sequential(conv2d(1, 2, 3), relu(), flatten(), linear(2 * 26 * 26, 10));\n`);
    assert.match(ok(spawnSync(process.execPath, [bin, 'summary', '--arch-file', 'net.ts'], { cwd: project, encoding: 'utf8', env }), 'cnnlab summary'), /Total params: 13,550/);
  });

  it(
    'its cnnlab serve serves the page’s script bundled at build time',
    async () => {
      const bin = join(project, 'node_modules', 'cnnlab', 'bin', 'cnnlab.js');
      const serve = spawn(process.execPath, [bin, 'serve', '--model', 'run', '--port', '0'], { cwd: project, env: userEnv() });
      try {
        const url = await new Promise<string>((resolve, reject) => {
          let said = '';
          serve.stdout.on('data', (b: Buffer) => {
            said += b.toString();
            const m = /on (http:\S+) serving/.exec(said);
            if (m) resolve(m[1]);
          });
          serve.stderr.on('data', (b: Buffer) => (said += b.toString()));
          serve.once('exit', (code) => reject(new Error(`serve exited ${code}: ${said}`)));
        });
        const page = await fetch(new URL('app.js', url));
        assert.equal(page.status, 200);
        assert.ok((await page.text()).length > 1000);
      } finally {
        serve.kill();
      }
    },
  );
});
