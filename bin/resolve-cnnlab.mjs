// A module resolve hook: an architecture file's `import ... from 'cnnlab'` finds this cnnlab
// where no package of that name is installed beside the file (npx from a clone, a global install).
const INDEX = new URL('../index.ts', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier !== 'cnnlab') return next(specifier, context);
  try {
    return await next(specifier, context);
  } catch {
    return { url: INDEX, shortCircuit: true };
  }
}
