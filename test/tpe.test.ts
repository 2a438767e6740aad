import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../common/rng.ts';
import { type Observation, parseSpace, randomPoint, suggestNew, suggestTpe } from '../training/tpe.ts';

const space = parseSpace('filters=16:128:8,kernel=2:5,layers=1:10,act=relu|tanh|gelu');
/** A known function with its minimum at filters 72, kernel 3, layers 4, act gelu. */
const f = (p: Record<string, string>) => ((+p.filters - 72) / 112) ** 2 + 0.5 * ((+p.kernel - 3) / 3) ** 2 + ((+p.layers - 4) / 9) ** 2 + (p.act === 'gelu' ? 0 : 0.05);

describe('TPE', () => {
  it('parses a search space and rejects a bad one with one line', () => {
    assert.deepEqual(space.filters, { kind: 'int', lo: 16, hi: 128, step: 8 });
    assert.deepEqual(space.act, { kind: 'choice', values: ['relu', 'tanh', 'gelu'] });
    assert.throws(() => parseSpace('filters=128:16'), /--space filters=128:16: expected whole numbers lo:hi\[:step\]/);
    assert.throws(() => parseSpace('filters'), /--space filters: expected key=lo:hi/);
  });

  it('suggests points inside the space, on its grid', () => {
    const rng = Rng.seeded(1);
    const h: Observation[] = [];
    for (let i = 0; i < 30; i++) {
      const p = suggestTpe(space, h, rng);
      assert.ok(+p.filters >= 16 && +p.filters <= 128 && (+p.filters - 16) % 8 === 0, p.filters);
      assert.ok(+p.kernel >= 2 && +p.kernel <= 5 && +p.layers >= 1 && +p.layers <= 10);
      assert.ok(['relu', 'tanh', 'gelu'].includes(p.act));
      h.push({ point: p, loss: f(p) });
    }
  });

  it('proposes no point a trial already ran while the space has others (TPE and random)', () => {
    const small = parseSpace('a=1:3,b=x|y');
    for (const algo of ['tpe', 'random'] as const) {
      const rng = Rng.seeded(5);
      const h: Observation[] = [];
      for (let i = 0; i < 6; i++) {
        const p = suggestNew(small, h, rng, algo, { startup: 2, gamma: 0.25, candidates: 24 });
        assert.ok(!h.some((o) => o.point.a === p.a && o.point.b === p.b), `${algo} trial ${i + 1} repeats ${JSON.stringify(p)}`);
        h.push({ point: p, loss: +p.a + (p.b === 'x' ? 0 : 0.5) });
      }
    }
  });

  it('beats random search on a known function (same budget, 20 seeds)', () => {
    let tpe = 0;
    let random = 0;
    let wins = 0;
    for (let seed = 0; seed < 20; seed++) {
      const rng = Rng.seeded(seed);
      const h: Observation[] = [];
      for (let i = 0; i < 40; i++) {
        const p = suggestTpe(space, h, rng);
        h.push({ point: p, loss: f(p) });
      }
      const r = Rng.seeded(seed + 1000);
      let bestRandom = Infinity;
      for (let i = 0; i < 40; i++) bestRandom = Math.min(bestRandom, f(randomPoint(space, r)));
      const bestTpe = Math.min(...h.map((o) => o.loss));
      tpe += bestTpe / 20;
      random += bestRandom / 20;
      if (bestTpe < bestRandom) wins++;
    }
    assert.ok(tpe < 0.7 * random, `mean best loss: TPE ${tpe.toFixed(4)}, random ${random.toFixed(4)}`);
    assert.ok(wins >= 13, `TPE won ${wins} of 20`);
  });
});
