// Builds the published package into dist/: compiled JavaScript and .d.ts (tsconfig.build.json),
// and beside them what the demo page needs, in dist/inference/web/: the static files of
// inference/web/ and the page's script bundled for the browser.
// `npm pack` and `npm publish` run it (the prepare script); `npm run build` runs it alone.
import { cpSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tsImport } from 'tsx/esm/api';

/** The page's bundled script in dist/inference/web/, which the server of the built package serves. */
const BUNDLE = 'app.bundle.js';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
// tsc's messages go to stderr: npm pack --json prints its JSON on stdout after this script.
const built = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: ['ignore', 2, 2] });
if (built.status !== 0) {
  process.stderr.write('cnnlab build: tsc failed (see above)\n');
  process.exit(built.status ?? 1);
}
const web = join(root, 'inference', 'web');
for (const name of readdirSync(web)) {
  if (!/\.(ts|mts)$/.test(name)) cpSync(join(web, name), join(dist, 'inference', 'web', name), { recursive: true });
}
// The page's script, bundled now from the TypeScript sources (which the package does not ship:
// beside the .d.ts files they would be what a user's tsc reads), as inference/page-bundle.ts bundles it.
const pageBundle = join(root, 'inference', 'page-bundle.ts');
if (existsSync(pageBundle)) {
  const { bundlePage } = await tsImport(pathToFileURL(pageBundle).href, import.meta.url);
  writeFileSync(join(dist, 'inference', 'web', BUNDLE), await bundlePage());
}
process.stderr.write(`cnnlab build: wrote ${dist}\n`);
