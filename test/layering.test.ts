import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { bundlePage } from '../inference/page-bundle.ts';

/**
 * The folders from the bottom up: a module may import from its own folder or one below it,
 * never from one above (docs/architecture.md says what each holds).
 */
const LAYERS = ['common', 'datasets', 'graph-builder', 'runtime', 'inference', 'training', 'cli'] as const;

const ROOT = resolve(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(ts|js)$/.test(name) ? [path] : [];
  });
}

/** Relative import specifiers of a module (static `from '...'` and dynamic `import('...')`). */
function relativeImports(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) out.push(m[1]);
  return out;
}

const layerOf = (file: string) => LAYERS.indexOf(relative(ROOT, file).split(/[\\/]/)[0] as (typeof LAYERS)[number]);

test('no module imports from a folder above its own (common <- datasets <- graph-builder <- runtime <- inference <- training <- cli)', () => {
  const upward: string[] = [];
  let checked = 0;
  for (const layer of LAYERS) {
    for (const file of sources(join(ROOT, layer))) {
      for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
        const target = resolve(dirname(file), spec);
        const [from, to] = [layerOf(file), layerOf(target)];
        checked++;
        if (to > from) upward.push(`${relative(ROOT, file)} imports ${relative(ROOT, target)}`);
      }
    }
  }
  assert.ok(checked > 100, `only ${checked} imports found: the scan is broken`);
  assert.deepEqual(upward, []);
});

test('the layering check catches an upward import', () => {
  const specs = relativeImports("import { fit } from '../training/fit.ts';\nconst m = await import('../cli/main.ts');");
  assert.deepEqual(specs, ['../training/fit.ts', '../cli/main.ts']);
  const file = join(ROOT, 'datasets', 'sources.ts');
  assert.ok(layerOf(resolve(dirname(file), specs[0])) > layerOf(file));
});

test('the demo page (inference/web) is inside the layering scan and bundles for the browser (esbuild refuses node: modules) with the shared checkpoint codec, feed builder and shape helpers', async () => {
  const web = sources(join(ROOT, 'inference', 'web')).map((f) => relative(ROOT, f));
  assert.ok(web.includes(join('inference', 'web', 'app.ts')), web.join(', '));
  // esbuild's browser platform refuses node: modules, naming the importing file.
  const bundle = new TextDecoder().decode(await bundlePage());
  assert.match(bundle, /import \* as ort from "\/ort\/ort\.wasm\.min\.mjs"/);
  for (const shared of ['graph-builder/artifacts/checkpoint-codec.ts', 'runtime/step-runner.ts', 'graph-builder/model.ts', 'graph-builder/train-mode.ts']) assert.ok(bundle.includes(`// ${shared}\n`), `the page does not use ${shared}`);
});
