import { UsageError } from '../common/errors.ts';
import { headParams } from './import/head.ts';
import { elementCount, featureParams, type Model } from './model.ts';

/** A glob over parameter names: `*` any run of characters, `?` one; the whole name must match. */
function globRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * The trainable parameters `--freeze` keeps fixed: comma-separated globs over the names cnnlab
 * inspect lists, 'backbone' (every one but the head's) or transfer's 'features' (everything
 * before the first fully connected layer). A pattern that matches nothing, or a freeze that
 * leaves nothing to train, is one line naming the flag.
 */
export function frozenParams(model: Model, freeze: string | undefined): Set<string> | undefined {
  if (!freeze) return undefined;
  const trainable = model.params.filter((p) => p.trainable).map((p) => p.name);
  const frozen = new Set<string>();
  for (const pattern of freeze.split(',').map((p) => p.trim()).filter(Boolean)) {
    let names: string[];
    if (pattern === 'backbone') {
      const head = headParams(model);
      names = trainable.filter((n) => !head.has(n));
    } else if (pattern === 'features') names = [...featureParams(model)].filter((n) => trainable.includes(n));
    else names = trainable.filter((n) => globRegExp(pattern).test(n));
    if (names.length === 0) throw new UsageError(`--freeze ${pattern}: matches none of the ${trainable.length} trainable parameters (cnnlab inspect lists them: ${trainable.slice(0, 3).join(', ')}${trainable.length > 3 ? ', ...' : ''})`);
    for (const n of names) frozen.add(n);
  }
  if (frozen.size === trainable.length) throw new UsageError(`--freeze ${freeze}: freezes every trainable parameter; leave some to train`);
  return frozen;
}

/** `trainable 2,565 of 2,226,435 parameters (2,223,870 frozen)`, for the run header. */
export function trainableLine(model: Model, frozen: ReadonlySet<string> | undefined): string {
  const count = (keep: (name: string) => boolean) => model.params.filter((p) => p.trainable && keep(p.name)).reduce((a, p) => a + elementCount(p.shape), 0);
  const fmt = (n: number) => n.toLocaleString('en-US');
  const frozenCount = count((n) => frozen?.has(n) ?? false);
  return `trainable ${fmt(model.trainableCount - frozenCount)} of ${fmt(model.trainableCount)} parameters${frozenCount ? ` (${fmt(frozenCount)} frozen)` : ''}`;
}
