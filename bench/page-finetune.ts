/**
 * The demo page's fine-tuning step time, measured in Chromium (playwright-core, Debian's
 * /usr/bin/chromium): per model, one drawn example, Train pressed with K = 10 steps (a batch of
 * 8 example slots + 24 replayed training images), five presses after a warm-up; prints the
 * median milliseconds per step and the wasm threads the page used. The models are trained here
 * briefly (the step time does not depend on how well they are trained).
 *
 *   npx tsx bench/page-finetune.ts [--models jhu-net,eva-best,partB]
 */
import { existsSync, mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { createDemoServer, loadServedModels } from '../inference/server.ts';
import { resolveRunConfig } from '../training/config.ts';
import { fit } from '../training/fit.ts';

const { values } = parseArgs({ options: { models: { type: 'string', default: 'jhu-net,eva-best,partB' } } });
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  console.log(`page-finetune skipped: Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'cnnlab-page-bench-'));
const names = values.models.split(',');
const runs: string[] = [];
for (const name of names) {
  const cfg = resolveRunConfig(await loadArchitecture(name), { 'limit-train': 2000, epochs: 1, batch: 100, 'val-split': 0, threads: 2 });
  await fit(cfg, { runDir: join(dir, name), resume: false, progress: false, log: () => {} });
  runs.push(join(dir, name));
}
const server = createDemoServer(await loadServedModels(runs));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
type Cnnlab = { ready: Promise<void>; settled: () => Promise<void>; train: () => Promise<void>; state: { current: { architecture: string; parameters: number } } };
declare const window: { cnnlab: Cnnlab };
await page.evaluate(() => window.cnnlab.ready);
console.log('| model | parameters | ms per fine-tuning step (median of 5 presses of 10 steps, min..max) | wasm threads |\n|---|---|---|---|');
for (const [i, name] of names.entries()) {
  await page.selectOption('#model', String(i));
  await page.waitForFunction((arch) => window.cnnlab.state.current.architecture === arch, name);
  await page.waitForTimeout(2000);
  await page.click('#clear');
  const box = (await page.locator('#pad').boundingBox())!;
  await page.mouse.move(box.x + 150, box.y + 50);
  await page.mouse.down();
  await page.mouse.move(box.x + 140, box.y + 240, { steps: 8 });
  await page.mouse.up();
  await page.evaluate(() => window.cnnlab.settled());
  await page.selectOption('#label', '1');
  await page.click('#add');
  await page.fill('#steps', '10');
  const times: number[] = [];
  for (let press = 0; press < 6; press++) {
    await page.evaluate(() => window.cnnlab.train());
    const status = (await page.locator('#tune-status').textContent()) ?? '';
    const ms = Number(/in (\d+) ms/.exec(status)?.[1]);
    if (press > 0) times.push(ms / 10);
  }
  const card = (await page.locator('#card').textContent()) ?? '';
  const threads = /wasm, (\d+) thread/.exec(card)?.[1] ?? '?';
  const params = (await page.evaluate(() => window.cnnlab.state.current.parameters)).toLocaleString('en-US');
  const sorted = [...times].sort((a, b) => a - b);
  console.log(`| ${name} | ${params} | ${sorted[2].toFixed(1)} (${sorted[0].toFixed(1)}..${sorted[4].toFixed(1)}) | ${threads} |`);
}
await browser.close();
server.close();
