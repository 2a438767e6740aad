import { UsageError } from '../common/errors.ts';
import { Rng } from '../common/rng.ts';

/** A search dimension: integers lo..hi in steps (hyperopt's quniform), or a list of choices. */
export type Dimension = { kind: 'int'; lo: number; hi: number; step: number } | { kind: 'choice'; values: string[] };
export type Space = Record<string, Dimension>;
export type Point = Record<string, string>;

export interface Observation {
  point: Point;
  /** Lower is better (we minimise 1 - accuracy); invalid trials get the worst loss seen. */
  loss: number;
}

/** Parses `filters=16:128:8,kernel=2:5,act=relu|tanh`. */
export function parseSpace(spec: string): Space {
  const space: Space = {};
  for (const part of spec.split(',')) {
    const [key, range] = part.split('=').map((s) => s?.trim());
    if (!key || !range) throw new UsageError(`--space ${part}: expected key=lo:hi[:step] or key=a|b|c`);
    if (range.includes('|')) {
      space[key] = { kind: 'choice', values: range.split('|') };
      continue;
    }
    const nums = range.split(':').map(Number);
    const [lo, hi, step = 1] = nums;
    if (nums.length < 2 || nums.length > 3 || !nums.every(Number.isInteger) || hi < lo || step < 1) {
      throw new UsageError(`--space ${part}: expected whole numbers lo:hi[:step] with lo <= hi, step >= 1`);
    }
    space[key] = { kind: 'int', lo, hi, step };
  }
  return space;
}

function gridValues(d: Extract<Dimension, { kind: 'int' }>): number[] {
  const out: number[] = [];
  for (let v = d.lo; v <= d.hi; v += d.step) out.push(v);
  return out;
}

export function randomPoint(space: Space, rng: Rng): Point {
  const p: Point = {};
  for (const [k, d] of Object.entries(space)) {
    const values = d.kind === 'int' ? gridValues(d).map(String) : d.values;
    p[k] = values[rng.int(0, values.length - 1)];
  }
  return p;
}

function normalPdf(x: number, mu: number, sigma: number): number {
  return Math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * Math.sqrt(2 * Math.PI));
}

/**
 * An adaptive Parzen estimator over [lo, hi] (hyperopt's adaptive_parzen_normal): a Gaussian
 * at each observation, its width the larger gap to a neighbour, plus a wide prior component.
 */
class Parzen {
  readonly mus: number[];
  readonly sigmas: number[];
  readonly weights: number[];

  constructor(points: number[], lo: number, hi: number) {
    const range = hi - lo;
    const prior = (lo + hi) / 2;
    const mus = [...points, prior].sort((a, b) => a - b);
    const minSigma = range / Math.min(100, mus.length + 1);
    this.mus = mus;
    this.sigmas = mus.map((m, i) => {
      if (m === prior && mus.length === 1) return range;
      const left = i > 0 ? m - mus[i - 1] : m - lo;
      const right = i < mus.length - 1 ? mus[i + 1] - m : hi - m;
      return Math.min(range, Math.max(minSigma, left, right));
    });
    const priorIndex = mus.indexOf(prior);
    this.sigmas[priorIndex] = range;
    this.weights = mus.map(() => 1 / mus.length);
  }

  density(x: number): number {
    let s = 0;
    for (let i = 0; i < this.mus.length; i++) s += this.weights[i] * normalPdf(x, this.mus[i], this.sigmas[i]);
    return s;
  }

  sample(rng: Rng): number {
    const i = rng.int(0, this.mus.length - 1);
    // Box-Muller.
    const u = Math.max(rng.float(), 1e-12);
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.float());
    return this.mus[i] + this.sigmas[i] * z;
  }
}

export interface TpeSettings {
  /** Random trials before the model takes over (hyperopt: 20; fewer for small budgets). */
  startup: number;
  /** Fraction of observations that count as good (hyperopt: 0.25, applied to sqrt(n)). */
  gamma: number;
  /** Candidates drawn from the good density per suggestion (hyperopt: 24). */
  candidates: number;
}

export const DEFAULT_TPE: TpeSettings = { startup: 10, gamma: 0.25, candidates: 24 };

/**
 * Tree-structured Parzen Estimator (Bergstra et al. 2011), for independent dimensions:
 * split the history into good and bad by loss, model each dimension's density in both
 * groups, and choose among candidates drawn from the good density the one that maximises
 * l(x) / g(x) (the expected improvement under TPE's model).
 */
export function suggestTpe(space: Space, history: Observation[], rng: Rng, s: TpeSettings = DEFAULT_TPE): Point {
  if (history.length < s.startup) return randomPoint(space, rng);
  const sorted = [...history].sort((a, b) => a.loss - b.loss);
  const nGood = Math.max(1, Math.min(Math.ceil(s.gamma * Math.sqrt(history.length)), 25));
  const good = sorted.slice(0, nGood);
  const bad = sorted.slice(nGood);
  const point: Point = {};
  for (const [k, d] of Object.entries(space)) {
    if (d.kind === 'choice') {
      const K = d.values.length;
      const weights = (group: Observation[]) => d.values.map((v) => (group.filter((o) => o.point[k] === v).length + 1) / (group.length + K));
      const l = weights(good);
      const g = weights(bad);
      let bestV = d.values[0];
      let bestScore = -Infinity;
      for (let c = 0; c < s.candidates; c++) {
        let r = rng.float();
        let idx = 0;
        while (idx < K - 1 && r >= l[idx]) r -= l[idx++];
        const score = Math.log(l[idx]) - Math.log(g[idx]);
        if (score > bestScore) [bestScore, bestV] = [score, d.values[idx]];
      }
      point[k] = bestV;
    } else {
      const lo = d.lo - d.step / 2;
      const hi = d.hi + d.step / 2;
      const l = new Parzen(good.map((o) => Number(o.point[k])), lo, hi);
      const g = new Parzen(bad.map((o) => Number(o.point[k])), lo, hi);
      let best = d.lo;
      let bestScore = -Infinity;
      for (let c = 0; c < s.candidates; c++) {
        const x = Math.min(d.hi, Math.max(d.lo, d.lo + Math.round((l.sample(rng) - d.lo) / d.step) * d.step));
        const score = Math.log(l.density(x) + 1e-300) - Math.log(g.density(x) + 1e-300);
        if (score > bestScore) [bestScore, best] = [score, x];
      }
      point[k] = String(best);
    }
  }
  return point;
}

const samePoint = (a: Point, b: Point) => Object.keys(a).every((k) => a[k] === b[k]);

/**
 * The next point to try: TPE's (or a random) suggestion that no earlier trial ran. TPE samples
 * each dimension on its own and, once a region wins, proposes its best point again (a search of
 * mnist-8k ran one point twice in 24 trials); up to 50 draws, then 200 random ones, find one not
 * yet run; where the space has none left the suggestion stands.
 */
export function suggestNew(space: Space, history: Observation[], rng: Rng, algo: 'tpe' | 'random', s: TpeSettings = DEFAULT_TPE): Point {
  const ran = (p: Point) => history.some((h) => samePoint(h.point, p));
  let point = algo === 'tpe' ? suggestTpe(space, history, rng, s) : randomPoint(space, rng);
  for (let tries = 0; tries < 50 && ran(point); tries++) point = algo === 'tpe' ? suggestTpe(space, history, rng, s) : randomPoint(space, rng);
  // TPE concentrated on points that all ran: the rest of the space, at random.
  for (let tries = 0; tries < 200 && ran(point); tries++) point = randomPoint(space, rng);
  return point;
}
