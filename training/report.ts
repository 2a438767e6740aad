import { ensureDir } from '../common/files.ts';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { CnnlabError } from '../common/errors.ts';
import { type EpochMetrics, readMetrics } from './fit.ts';
import { chosenEpoch, rankOf } from './run-folder.ts';
import { readSweepManifest, type TrialStatus } from './sweep.ts';

export interface ReportEntry {
  name: string;
  group: string;
  status: TrialStatus;
  epochs: EpochMetrics[];
  parameters?: number;
  seconds?: number;
  message?: string;
}

/** Architecture and dataset from a run's config.json, for labels; a missing or damaged one gives none. */
function runLabel(path: string): { architecture?: string; dataset?: string } {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as { architecture?: unknown; dataset?: unknown };
    return typeof v.architecture === 'string' && typeof v.dataset === 'string' ? { architecture: v.architecture, dataset: v.dataset } : {};
  } catch {
    return {};
  }
}

/** A sweep folder (its sweep.json) or run folders, as report entries. */
export function collectEntries(targets: string[]): ReportEntry[] {
  const entries: ReportEntry[] = [];
  for (const t of targets) {
    const sweep = join(t, 'sweep.json');
    if (existsSync(sweep)) {
      const m = readSweepManifest(sweep);
      for (const trial of m.trials) {
        const name = Object.entries(trial.settings).map(([k, v]) => `${k}=${v}`).join(', ') || 'base';
        entries.push({ name, group: trial.group, status: trial.status, epochs: readMetrics(trial.run), parameters: trial.parameters, seconds: trial.seconds, message: trial.message });
      }
    } else if (existsSync(join(t, 'metrics.jsonl'))) {
      const cfg = runLabel(join(t, 'config.json'));
      const epochs = readMetrics(t);
      entries.push({ name: `${basename(t)}${cfg.architecture ? ` (${cfg.architecture}, ${cfg.dataset})` : ''}`, group: 'runs', status: 'done', epochs, seconds: epochs.reduce((a, m) => a + m.seconds, 0) });
    } else {
      throw new CnnlabError(`${t}: neither a sweep folder (sweep.json) nor a run folder (metrics.jsonl)`, 2);
    }
  }
  return entries;
}

function chartSpec(title: string, entries: ReportEntry[], field: 'testAcc' | 'trainLoss' | 'testLoss', axis: string): vl.TopLevelSpec {
  const values = entries.flatMap((e) => e.epochs.map((m) => ({ epoch: m.epoch, value: field === 'testAcc' ? 100 * m[field] : m[field], trial: e.name })));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, fontSize: 15 },
    width: 520,
    height: 280,
    background: 'white',
    padding: 12,
    data: { values },
    mark: { type: 'line', point: true, strokeWidth: 2 },
    encoding: {
      // Whole epochs, and values without trailing zeros: a one-epoch run's axes read 1 and 91, not 1.000000 and 91.000000.
      x: { field: 'epoch', type: 'quantitative', title: 'epoch', axis: { tickMinStep: 1, format: 'd', labelFontSize: 12, titleFontSize: 13 } },
      y: { field: 'value', type: 'quantitative', title: axis, scale: { zero: false }, axis: { format: '~r', labelFontSize: 12, titleFontSize: 13 } },
      color: { field: 'trial', type: 'nominal', title: 'trial', legend: { labelFontSize: 12, titleFontSize: 13, labelLimit: 320 } },
    },
  };
}

async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  await view.finalize();
  return svg;
}

const escape = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
const slug = (s: string) => s.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').toLowerCase();
const percent = (v: number | undefined) => (v === undefined ? '-' : (100 * v).toFixed(2));

export interface ReportFiles {
  html: string;
  pngs: string[];
}

/**
 * report.html with, per group, test-accuracy and train-loss curves overlaid per trial
 * (vega-lite rendered to SVG, and to PNG through sharp) and a table ranked as the search ranks:
 * by the chosen epoch's validation accuracy, by test accuracy for runs without validation images.
 */
export async function writeReport(entries: ReportEntry[], outDir: string, title: string): Promise<ReportFiles> {
  ensureDir(outDir);
  const groups = [...new Set(entries.map((e) => e.group))];
  const sections: string[] = [];
  const pngs: string[] = [];
  for (const g of groups) {
    const list = entries.filter((e) => e.group === g);
    const charts: string[] = [];
    for (const [field, axis, suffix] of [
      ['testAcc', 'test accuracy (%)', 'accuracy'],
      ['trainLoss', 'train loss', 'loss'],
    ] as const) {
      const svg = await renderSvg(chartSpec(`${g}: ${axis}`, list, field, axis));
      const png = join(outDir, `${slug(g)}-${suffix}.png`);
      await sharp(Buffer.from(svg), { density: 144 }).png().toFile(png);
      pngs.push(png);
      charts.push(`<figure>${svg}</figure>`);
    }
    // Each trial with the epoch best.onnx holds (by validation where the run has it), ranked by it.
    const rows = list
      .map((e) => ({ e, c: chosenEpoch(e.epochs) }))
      .sort((a, b) => (b.c ? rankOf(b.c) : -1) - (a.c ? rankOf(a.c) : -1))
      .map(({ e, c }) => {
        const last = e.epochs[e.epochs.length - 1];
        const status = e.status === 'done' ? '' : ` <span class="bad">${e.status}${e.message ? `: ${escape(e.message)}` : ''}</span>`;
        return `<tr><td>${escape(e.name)}${status}</td><td>${c ? `${c.epoch}` : '-'}</td><td>${percent(c?.valAcc)}</td><td>${percent(c?.testAcc)}</td><td>${percent(last?.testAcc)}</td><td>${last ? last.trainLoss.toFixed(4) : '-'}</td><td>${e.parameters?.toLocaleString('en-US') ?? '-'}</td><td>${e.seconds ? e.seconds.toFixed(0) : '-'}</td></tr>`;
      });
    sections.push(
      `<section><h2>${escape(g)}</h2><div class="charts">${charts.join('')}</div><table><thead><tr><th>trial</th><th>chosen epoch</th><th>its validation %</th><th>its test %</th><th>final test %</th><th>final train loss</th><th>parameters</th><th>seconds</th></tr></thead><tbody>${rows.join('')}</tbody></table></section>`,
    );
  }
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title><style>
body{font:14px/1.4 system-ui,"DejaVu Sans",sans-serif;margin:24px;color:#1b1f24}h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}table{border-collapse:collapse;margin-top:8px}
th,td{border-bottom:1px solid #d8dde3;padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}.bad{color:#c62828}
</style></head><body><h1>${escape(title)}</h1>${sections.join('\n')}</body></html>`;
  const htmlPath = join(outDir, 'report.html');
  writeFileSync(htmlPath, html);
  return { html: htmlPath, pngs };
}
