// A module resolve hook: an architecture file's `import ... from 'cnnlab'` finds this cnnlab
// where no package of that name is installed beside the file (npx from a clone, a global install).
// From a checkout, the package's own name (node_modules/cnnlab linked to it, or the package
// naming itself) means its source, not a dist/ build that may be missing or older than the source.
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SOURCE = new URL('../index.ts', import.meta.url);
const BUILT = new URL('../dist/index.js', import.meta.url);
const checkout = existsSync(SOURCE);
const INDEX = (checkout ? SOURCE : BUILT).href;

const real = (url) => {
  try {
    return realpathSync(fileURLToPath(url));
  } catch {
    return undefined;
  }
};

export async function resolve(specifier, context, next) {
  if (specifier !== 'cnnlab') return next(specifier, context);
  let found;
  try {
    found = await next(specifier, context);
  } catch {
    return { url: INDEX, shortCircuit: true };
  }
  if (checkout && found.url.startsWith('file:') && real(found.url) === real(BUILT)) return { url: INDEX, shortCircuit: true };
  return found;
}
